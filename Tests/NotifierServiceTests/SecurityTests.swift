import Foundation
import NATSClient
import NotifierDemo
import NotifierService
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Synchronization
import Testing

/// What a client must not be able to do, proved against the real `notifier` process between
/// a real nats-server and redis-server: impersonate another user, subscribe to anything by
/// name, or receive events of a channel it is not a member of. Serialized: each test starts
/// its own servers.
@Suite(.serialized) struct SecurityTests {
    // MARK: cannot impersonate

    @Test func forgedUnsignedTamperedExpiredAndSubjectlessTokensGet401BeforeTheUpgrade() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let future = Int(Date().timeIntervalSince1970) + 600
        let valid = try await fixture.token("alice")
        let parts = valid.split(separator: ".").map(String.init)
        let otherSecret = await TokenIssuer(secret: Array("an-entirely-different-secret-0123456789".utf8))
        let cases: [(name: String, token: String, reasons: Set<String>)] = [
            ("signed with another secret", try await otherSecret.token(user: "alice"), ["bad_signature"]),
            ("alg none, no signature", "\(Self.base64URL(#"{"alg":"none","typ":"JWT"}"#)).\(Self.base64URL(#"{"sub":"alice","exp":\#(future)}"#)).", ["bad_signature", "malformed_token"]),
            ("alg none, valid signature kept", "\(Self.base64URL(#"{"alg":"none","typ":"JWT"}"#)).\(parts[1]).\(parts[2])", ["bad_signature", "malformed_token"]),
            ("sub changed, signature kept", "\(parts[0]).\(Self.base64URL(#"{"sub":"bob","exp":\#(future)}"#)).\(parts[2])", ["bad_signature"]),
            ("expired", try await fixture.issuer.token(subject: "alice", expiresAt: Date().addingTimeInterval(-300)), ["expired"]),
            ("no sub", try await fixture.issuer.token(subject: nil, expiresAt: Date().addingTimeInterval(300)), ["invalid_sub"]),
        ]
        for (name, token, reasons) in cases {
            for (path, headers) in [("/ws", ["Authorization": "Bearer \(token)"]), ("/ws?token=\(token)", [:])] {
                do {
                    _ = try WebSocketTestClient(port: fixture.port, path: path, headers: headers)
                    Issue.record("\(name): the upgrade was accepted")
                } catch WebSocketTestClient.Failure.refused(let status, let responseHeaders, _) {
                    #expect(status == 401, "\(name)")
                    #expect(reasons.contains(responseHeaders["x-switchboard-auth-error"] ?? ""), "\(name): \(responseHeaders)")
                }
            }
        }
        // None of them got as far as a slot: presence holds no user at all.
        let redis = try fixture.redisConnection()
        defer { redis.close() }
        #expect(try redis.command(["HLEN", PresenceKeys.users(instance: fixture.instanceID)]).integer == 0)
        // The genuine token still works, for the user it names.
        let client = try WebSocketTestClient(port: fixture.port, headers: ["Authorization": "Bearer \(valid)"])
        #expect(try client.receiveText()?.contains(#""user":"alice""#) == true)
    }

    @Test func typingIsPublishedAsTheTokenUserWhateverTheFrameClaims() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let received = PublishedMessages()
        let subscription = try nats.subscribe("chat.typing.>") { received.append($0) }
        defer { subscription.unsubscribe() }
        try nats.flush(timeout: .seconds(2))
        let mallory = try fixture.connect(try await fixture.token("mallory"))
        try mallory.send(text: #"{"type":"typing","channel":"general","user":"alice"}"#)
        try mallory.send(text: #"{"type":"typing","channel":"general","user_id":"alice","sender":"alice","sub":"alice"}"#)
        #expect(eventually(timeout: .seconds(3)) { received.count >= 1 })
        try await Task.sleep(for: .milliseconds(300))  // a second one (rate limit permitting) arrives by now
        let typings = try received.all.map { try Typing(decoding: $0.payload) }
        #expect(!typings.isEmpty)
        #expect(typings.allSatisfy { $0 == Typing(channelID: "general", userID: "mallory") }, "\(typings)")
    }

    // MARK: cannot subscribe by name

    @Test func framesAskingForAChannelOrSubjectAreRefusedAndTheNotifierKeepsOneSubscription() async throws {
        let monitor = try LoopbackPort.free()
        let fixture = try await NotifierFixture(natsArguments: ["-m", "\(monitor)"])
        defer { fixture.stop() }
        #expect(try Self.deliverySubscriptions(monitor: monitor, instance: fixture.instanceID) == [Subjects.inbox(instance: fixture.instanceID)])

        let alice = try fixture.connect(try await fixture.token("alice"))
        let mallory = try fixture.connect(try await fixture.token("mallory"))
        let aliceSlot = try #require(try fixture.slot(of: "alice"))
        let attempts: [(frame: String, code: String)] = [
            (#"{"type":"subscribe","channel":"secret"}"#, "unknown_type"),
            (#"{"type":"subscribe","subject":"\#(Subjects.inbox(instance: "n1"))"}"#, "unknown_type"),
            (#"{"type":"subscribe","subject":"chat.events.>"}"#, "unknown_type"),
            (#"{"type":"join","channel":"secret","user":"mallory"}"#, "unknown_type"),
            (#"{"type":"ping","channel":"secret"}"#, "bad_frame"),
            (#"{"type":"typing","channel":"chat.events.>"}"#, "invalid_channel"),
            (#"{"type":"resume","channel":">","after_seq":0}"#, "invalid_channel"),
        ]
        for (frame, code) in attempts {
            try mallory.send(text: frame)
            let reply = try #require(try mallory.receiveText(), "no answer to \(frame)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any])
            #expect(json["type"] as? String == "error", "\(frame) → \(reply)")
            #expect(json["code"] as? String == code, "\(frame) → \(reply)")
        }
        // An event of "secret" for alice's slot reaches alice and nobody else.
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        try fixture.deliver(seq: 5, channel: "secret", text: "for members", slots: [aliceSlot], over: nats)
        #expect(try alice.receiveText()?.contains("for members") == true)
        try mallory.send(text: #"{"type":"ping"}"#)
        #expect(try mallory.receiveText() == #"{"type":"pong"}"#, "mallory's next frame is the answer to her ping")
        // Still exactly one delivery subscription, whatever the clients asked for.
        #expect(try Self.deliverySubscriptions(monitor: monitor, instance: fixture.instanceID) == [Subjects.inbox(instance: fixture.instanceID)])
    }

    // MARK: cannot receive a non-member channel

    @Test func resumeOfAChannelTheUserIsNotAMemberOfReplaysNothing() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let jetStream = try fixture.chatStreams(over: nats)
        try fixture.publishMembership("secret", "bob", over: jetStream)
        try fixture.publishMembership("secret", "leaver", over: jetStream)
        try fixture.publishMembership("secret", "leaver", .left, version: 2, over: jetStream)
        try fixture.publishMembership("gone", "mallory", over: jetStream)
        try fixture.publishMembership("gone", "_", .channelDeleted, version: 2, over: jetStream)
        for channel in ["secret", "gone"] {
            for i in 1...3 {
                let event = ChatEvent(eventID: "\(channel)-\(i)", channelID: channel, senderID: "bob", createdAtMs: Int64(i), body: .messageCreated(messageID: "m\(i)", text: "private \(i)"))
                _ = try jetStream.publish(Subjects.event(channel: channel, partitionCount: 16), payload: event.encoded(), msgID: "\(channel)-\(i)")
            }
        }
        for (user, channel) in [("mallory", "secret"), ("leaver", "secret"), ("mallory", "gone")] {
            let client = try fixture.connect(try await fixture.token(user))
            try client.send(text: #"{"type":"resume","channel":"\#(channel)","after_seq":0}"#)
            let reply = try #require(try client.receiveText(timeout: .seconds(5)), "\(user) got no answer")
            #expect(reply.contains(#""type":"error""#) && reply.contains(#""code":"not_member""#), "\(user)/\(channel): \(reply)")
            try client.send(text: #"{"type":"ping"}"#)
            #expect(try client.receiveText() == #"{"type":"pong"}"#, "\(user)/\(channel): nothing was replayed")
        }
        // The member gets the three events: the refusals above were about membership alone.
        let bob = try fixture.connect(try await fixture.token("bob"))
        try bob.send(text: #"{"type":"resume","channel":"secret","after_seq":0}"#)
        var texts: [String] = []
        while let text = try bob.receiveText(), !text.contains(#""type":"resumed""#) { texts.append(text) }
        #expect(texts.count == 3 && texts.allSatisfy { $0.contains("private") }, "\(texts)")
    }

    @Test func deliveryIsWrittenOnlyToTheSlotsItNamesEvenForSlotsOfOtherUsersOnline() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        var sockets: [(user: String, client: WebSocketTestClient, slot: UInt32)] = []
        for user in ["u0", "u1", "u2", "u3", "u4", "u5"] {
            let client = try fixture.connect(try await fixture.token(user))
            sockets.append((user, client, try #require(try fixture.slot(of: user))))
        }
        // Each delivery names a different subset (plus slots nobody holds).
        let subsets: [[Int]] = [[0], [1, 2], [3, 4, 5], [], [5, 0]]
        for (seq, subset) in subsets.enumerated() {
            try fixture.deliver(seq: UInt64(seq + 1), channel: "room\(seq)", text: "only-\(seq)", slots: subset.map { sockets[$0].slot } + [4_000, .max], over: nats)
        }
        // A last delivery to everyone marks the end: one inbox, so each socket's frames keep order.
        try fixture.deliver(seq: 99, channel: "barrier", text: "barrier", slots: sockets.map(\.slot), over: nats)
        for (index, socket) in sockets.enumerated() {
            var seen: [Int] = []
            while let text = try socket.client.receiveText(), !text.contains("barrier") {
                if let range = text.range(of: #"only-(\d+)"#, options: .regularExpression) { seen.append(Int(text[range].dropFirst(5)) ?? -1) }
            }
            let expected = subsets.indices.filter { subsets[$0].contains(index) }
            #expect(seen == expected, "\(socket.user) saw deliveries \(seen), named in \(expected)")
        }
    }

    // MARK: helpers

    static func base64URL(_ text: String) -> String {
        Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The notifier connections' subscriptions as nats-server's monitoring endpoint lists
    /// them, without request/reply inboxes (`_INBOX.`, JetStream API replies).
    static func deliverySubscriptions(monitor: UInt16, instance: String) throws -> [String] {
        let response = try HTTPProbe.get(port: monitor, path: "/connz?subs=1&limit=1024")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let connections = try #require(json["connections"] as? [[String: Any]])
        // The main connection, and the inbox's own ("notifier-<instance>-inbox") where it has one.
        let notifier = connections.filter { ["notifier-\(instance)", "notifier-\(instance)-inbox"].contains($0["name"] as? String) }
        #expect(!notifier.isEmpty, "no notifier connection in \(response.body)")
        return notifier.flatMap { ($0["subscriptions_list"] as? [String]) ?? [] }.filter { !$0.hasPrefix("_INBOX.") }.sorted()
    }
}

/// Messages a test subscription received (from nats.c's thread).
final class PublishedMessages: Sendable {
    private let messages = Mutex<[NATSMessage]>([])
    func append(_ message: NATSMessage) { messages.withLock { $0.append(message) } }
    var count: Int { messages.withLock { $0.count } }
    var all: [NATSMessage] { messages.withLock { $0 } }
}
