import Foundation
import NIOHTTP1
import NotifierDemo
import NotifierService
import ServiceSupport
import Testing

/// The development routes on their own, without a notifier or servers: what is served with
/// and without `--demo-send`, and the send endpoint's refusals before it touches NATS.
@Suite struct DemoRoutesTests {
    static let secret = Array("demo-routes-test-secret-0123456789abcdef".utf8)

    private static func request(_ method: HTTPMethod, _ uri: String, token: String? = nil, body: String = "") -> RouteRequest {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let path = String(uri.split(separator: "?", maxSplits: 1).first ?? "")
        return RouteRequest(head: head, path: path, body: Array(body.utf8))
    }

    @Test func pageIsServedAndSendExistsOnlyWithASender() async {
        let pageOnly = DemoRoutes(sender: nil)
        #expect(pageOnly.serves(path: "/") && pageOnly.serves(path: "/index.html"))
        #expect(!pageOnly.serves(path: "/demo/send"))
        #expect(!pageOnly.serves(path: "/healthz"))
        let page = await pageOnly.respond(to: Self.request(.GET, "/?token=abc"))
        #expect(page.status == .ok)
        #expect(page.headers.contains { $0.0 == "Content-Security-Policy" && $0.1.contains("default-src 'none'") })
        #expect(String(decoding: page.body, as: UTF8.self).contains(#"from "/switchboard.js""#))
        #expect(!pageOnly.serves(path: "/switchboard.js"), "no client library given: nothing to serve")
        let withClient = DemoRoutes(sender: nil, urls: ["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"], clientScript: Array("export class SwitchboardClient {}".utf8))
        #expect(withClient.serves(path: "/switchboard.js"))
        let script = await withClient.respond(to: Self.request(.GET, "/switchboard.js"))
        #expect(script.headers.contains { $0.0 == "Content-Type" && $0.1.hasPrefix("text/javascript") })
        #expect(String(decoding: script.body, as: UTF8.self) == "export class SwitchboardClient {}")
        let listed = String(decoding: await withClient.respond(to: Self.request(.GET, "/")).body, as: UTF8.self)
        #expect(listed.contains(#"const configured = ["ws://127.0.0.1:1/ws","ws://127.0.0.1:2/ws"];"#))

        let sender = await DemoSender(natsURL: "nats://127.0.0.1:1", jwtSecret: Self.secret, partitionCount: 16)
        #expect(DemoRoutes(sender: sender).serves(path: "/demo/send"))
    }

    @Test func sendRefusesOtherMethodsBadTokensAndBadInputBeforePublishing() async throws {
        // An unreachable NATS: every answer here comes before a publish is attempted.
        let routes = DemoRoutes(sender: await DemoSender(natsURL: "nats://127.0.0.1:1", jwtSecret: Self.secret, partitionCount: 16))
        #expect(await routes.respond(to: Self.request(.GET, "/demo/send")).status == .methodNotAllowed)
        let missing = await routes.respond(to: Self.request(.POST, "/demo/send", body: #"{"channel":"general","text":"hi"}"#))
        #expect(missing.status == .unauthorized)
        #expect(missing.headers.contains { $0.0 == AuthFailure.header && $0.1 == AuthFailure.missingToken.rawValue })
        let token = try await TokenIssuer(secret: Self.secret).token(user: "alice")
        #expect(await routes.respond(to: Self.request(.POST, "/demo/send", token: token, body: "not json")).status == .badRequest)
        let badChannel = await routes.respond(to: Self.request(.POST, "/demo/send", token: token, body: #"{"channel":"bad id!","text":"x"}"#))
        #expect(badChannel.status == .badRequest)
        #expect(String(decoding: badChannel.body, as: UTF8.self).contains("bad_channel"))
        let unreachable = await routes.respond(to: Self.request(.POST, "/demo/send", token: token, body: #"{"channel":"general","text":"hi"}"#))
        #expect(unreachable.status == .serviceUnavailable)
    }
}
