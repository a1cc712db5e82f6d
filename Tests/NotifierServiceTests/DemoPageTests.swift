import Foundation
import NATSClient
import NotifierDemo
import NotifierService
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The demo page at `/` and the development-only `POST /demo/send`, against the real
/// `notifier` executable with real nats-server and redis-server.
@Suite(.serialized) struct DemoPageTests {
    @Test func pageIsServedAndSendDoesNotExistWithoutTheFlag() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let page = try HTTPProbe.get(port: UInt16(fixture.port), path: "/?token=abc")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        #expect(page.headers["referrer-policy"] == "no-referrer")
        #expect(page.body.contains(#"import { SwitchboardClient } from "/switchboard.js";"#))
        #expect(page.body.hasSuffix("</html>"))
        // The client library the page runs on, as the repository has it.
        let script = try HTTPProbe.get(port: UInt16(fixture.port), path: "/switchboard.js")
        #expect(script.status == 200)
        #expect(script.body == (try String(contentsOf: RepositoryPaths.root.appendingPathComponent("clients/js/switchboard.js"), encoding: .utf8)))

        let token = try await fixture.token("alice")
        let send = try post(port: fixture.port, path: "/demo/send", token: token, body: #"{"channel":"general","text":"hi"}"#)
        #expect(send.status == 404)
    }

    @Test func sendAuthenticatesChecksMembershipAndPublishesToJetStream() async throws {
        let fixture = try await NotifierFixture(arguments: ["--demo-send"])
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let jetStream = try fixture.chatStreams(over: nats)
        try fixture.publishMembership("general", "alice", over: jetStream)
        let alice = try await fixture.token("alice")
        let message = #"{"channel":"general","text":"hello from the page"}"#

        let missing = try post(port: fixture.port, path: "/demo/send", token: nil, body: message)
        #expect(missing.status == 401)
        #expect(missing.headers["x-switchboard-auth-error"] == "missing_token")
        let forger = await TokenIssuer(secret: Array("not-the-shared-secret-0123456789abcdef".utf8))
        let forged = try post(port: fixture.port, path: "/demo/send", token: try await forger.token(user: "alice"), body: message)
        #expect(forged.status == 401)
        #expect(forged.headers["x-switchboard-auth-error"] == "bad_signature")
        #expect(try post(port: fixture.port, path: "/demo/send", token: alice, body: message, method: "GET").status == 405)
        let huge = #"{"channel":"general","text":""# + String(repeating: "x", count: 5000) + #""}"#
        #expect(try post(port: fixture.port, path: "/demo/send", token: alice, body: huge).status == 413)
        let badChannel = try post(port: fixture.port, path: "/demo/send", token: alice, body: #"{"channel":"bad id!","text":"x"}"#)
        #expect(badChannel.status == 400)
        #expect(badChannel.body.contains("bad_channel"))
        #expect(try post(port: fixture.port, path: "/demo/send", token: alice, body: "not json").status == 400)

        // Bob is not a member of general: refused, nothing stored.
        let bob = try post(port: fixture.port, path: "/demo/send", token: try await fixture.token("bob"), body: message)
        #expect(bob.status == 403)
        #expect(bob.body.contains("not_member"))
        #expect(try jetStream.streamState(StreamNames.events).messages == 0)

        let sent = try post(port: fixture.port, path: "/demo/send", token: alice, body: message)
        #expect(sent.status == 200)
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(sent.body.utf8)) as? [String: Any])
        #expect(reply["seq"] as? Int == 1)
        let stored = try #require(try jetStream.lastMessage(stream: StreamNames.events, subject: Subjects.event(channel: "general", partitionCount: 16)))
        let event = try ChatEvent(decoding: stored.payload)
        #expect(event.senderID == "alice")
        #expect(event.channelID == "general")
        #expect(event.eventID == reply["event_id"] as? String)
        guard case .messageCreated(_, let text)? = event.body else {
            Issue.record("stored event is not MessageCreated: \(String(describing: event.body))")
            return
        }
        #expect(text == "hello from the page")
        #expect(stored.headers["Nats-Msg-Id"] == event.eventID)
    }

    /// One HTTP/1.1 request with a JSON body and, when given, the bearer token.
    private func post(port: Int, path: String, token: String?, body: String, method: String = "POST") throws -> HTTPProbe.Response {
        var headers = ["Content-Type": "application/json"]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        return try HTTPProbe.request(method, port: UInt16(port), path: path, headers: headers, body: body, timeout: .seconds(10))
    }
}
