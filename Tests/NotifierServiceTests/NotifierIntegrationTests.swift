import Foundation
import NATSClient
import NIOConcurrencyHelpers
import NotifierDemo
import NotifierService
import RedisClient
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing

/// End-to-end behaviour of the `notifier` executable against real nats-server and
/// redis-server processes. Serialized: each test starts its own servers.
@Suite(.serialized) struct NotifierIntegrationTests {
    @Test func badTokensAreRefusedWith401BeforeTheUpgrade() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let forger = await TokenIssuer(secret: Array("not-the-shared-secret-0123456789abcdef".utf8))
        let cases: [(String?, String)] = [
            (nil, "missing_token"),
            ("not.a.jwt", "malformed_token"),
            (try await forger.token(user: "mallory"), "bad_signature"),
            (try await fixture.issuer.token(subject: "alice", expiresAt: Date().addingTimeInterval(-120)), "expired"),
            (try await fixture.issuer.token(subject: "alice", expiresAt: nil), "missing_exp"),
            (try await fixture.issuer.token(subject: "bad id!", expiresAt: Date().addingTimeInterval(60)), "invalid_sub"),
        ]
        for (token, reason) in cases {
            let headers = token.map { ["Authorization": "Bearer \($0)"] } ?? [:]
            #expect(throws: Never.self) {
                do {
                    _ = try WebSocketTestClient(port: fixture.port, headers: headers)
                    Issue.record("upgrade with \(reason) token was accepted")
                } catch WebSocketTestClient.Failure.refused(let status, let responseHeaders, let body) {
                    #expect(status == 401)
                    #expect(responseHeaders["x-switchboard-auth-error"] == reason)
                    #expect(body.hasPrefix(reason))
                }
            }
        }
        #expect(fixture.metric(#"switchboard_notifier_auth_failures_total{reason="bad_signature"}"#) == 1)
        #expect(fixture.metric(#"switchboard_notifier_auth_failures_total{reason="missing_token"}"#) == 1)
        // A good token in the query string upgrades.
        let token = try await fixture.token("alice")
        let client = try WebSocketTestClient(port: fixture.port, path: "/ws?token=\(token)")
        #expect(try client.receiveText()?.contains(#""user":"alice""#) == true)
    }

    @Test func deliveryReachesExactlyTheSocketsOfItsSlots() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let (alice, bob, carol) = (try await fixture.token("alice"), try await fixture.token("bob"), try await fixture.token("carol"))
        let alicePhone = try fixture.connect(alice)
        let aliceLaptop = try fixture.connect(alice)
        let bobSocket = try fixture.connect(bob)
        let carolSocket = try fixture.connect(carol)
        let aliceSlot = try #require(try fixture.slot(of: "alice"))
        let bobSlot = try #require(try fixture.slot(of: "bob"))
        let carolSlot = try #require(try fixture.slot(of: "carol"))
        #expect(Set([aliceSlot, bobSlot, carolSlot]).count == 3)

        let nats = try fixture.natsConnection()
        defer { nats.close() }
        try fixture.deliver(seq: 7, channel: "general", text: "hi \"all\"", slots: [aliceSlot, bobSlot, 999], over: nats)

        for socket in [alicePhone, aliceLaptop, bobSocket] {
            let frame = try #require(try socket.receiveText())
            let json = try #require(try JSONSerialization.jsonObject(with: Data(frame.utf8)) as? [String: Any])
            #expect(json["type"] as? String == "event")
            #expect(json["channel"] as? String == "general")
            #expect(json["seq"] as? Int == 7)
            let event = try #require(json["event"] as? [String: Any])
            #expect(event["id"] as? String == "e7")
            #expect(event["kind"] as? String == "message_created")
            #expect(event["text"] as? String == "hi \"all\"")
        }
        // Carol's next frame is the answer to her own ping: nothing was delivered before it.
        try carolSocket.send(text: #"{"type":"ping"}"#)
        #expect(try carolSocket.receiveText() == #"{"type":"pong"}"#)
        #expect(eventually(timeout: .seconds(2)) { fixture.metric(#"switchboard_notifier_dropped_deliveries_total{reason="no_socket"}"#) == 1 })
        #expect(fixture.metric(#"switchboard_notifier_frames_written_total"#) == 3)

        // A typing message on the inbox goes the same way.
        var headers = NATSHeaders()
        headers[InboxKind.header] = InboxKind.typing
        try nats.publish(Subjects.inbox(instance: "n1"), payload: Typing(channelID: "general", userID: "bob", slots: [carolSlot]).encoded(), headers: headers)
        #expect(try carolSocket.receiveText() == #"{"type":"typing","channel":"general","user":"bob"}"#)
    }

    /// One inbox message carrying several events (the fan-out's batch) spanning channels and
    /// slots: each socket gets exactly its events, in the message's order; a slot without a
    /// socket and a socket that has just closed cost the others nothing.
    @Test func oneInboxMessageOfSeveralEventsReachesEachSocketInOrder() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let alice = try fixture.connect(try await fixture.token("alice"))
        let bob = try fixture.connect(try await fixture.token("bob"))
        let carol = try fixture.connect(try await fixture.token("carol"))
        let (aliceSlot, bobSlot, carolSlot) = (try #require(try fixture.slot(of: "alice")), try #require(try fixture.slot(of: "bob")), try #require(try fixture.slot(of: "carol")))
        carol.closeSocket()
        // Her socket is gone from routing once her presence is (the last socket's removal
        // deregisters her); her slot stays reserved, with no socket.
        #expect(eventually(timeout: .seconds(5)) { (try? fixture.slot(of: "carol", timeout: .milliseconds(1))) == nil })
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        try fixture.deliver([
            (1, "general", [aliceSlot, bobSlot, carolSlot]),
            (2, "random", [aliceSlot]),
            (3, "general", [bobSlot, 999]),
            (4, "general", [carolSlot, aliceSlot, bobSlot]),
            (5, "random", [bobSlot]),
        ], over: nats)
        func received(_ socket: WebSocketTestClient, _ count: Int) throws -> [String] {
            try (0..<count).map { _ in
                let frame = try #require(try socket.receiveText())
                let json = try #require(try JSONSerialization.jsonObject(with: Data(frame.utf8)) as? [String: Any])
                return "\(json["channel"] as? String ?? "?")@\(json["seq"] as? Int ?? 0)"
            }
        }
        #expect(try received(alice, 3) == ["general@1", "random@2", "general@4"])
        #expect(try received(bob, 4) == ["general@1", "general@3", "general@4", "random@5"])
        // Nothing more for either: the next frame is the answer to a ping.
        for socket in [alice, bob] {
            try socket.send(text: #"{"type":"ping"}"#)
            #expect(try socket.receiveText() == #"{"type":"pong"}"#)
        }
        #expect(fixture.metric("switchboard_notifier_deliveries_in_total") == 5)
        #expect(fixture.metric(#"switchboard_notifier_inbox_messages_total{kind="delivery"}"#) == 1)
        #expect(fixture.metric("switchboard_notifier_frames_written_total") == 7)
        #expect(fixture.metric(#"switchboard_notifier_dropped_deliveries_total{reason="no_socket"}"#) == 3)
    }

    @Test func nioClientsOnTwoDevicesBothReceiveAndAreToldToReconnectOnDrain() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let token = try await fixture.token("maria")
        let phone = try await NIOWebSocketTestClient.connect(port: fixture.port, token: token)
        let laptop = try await NIOWebSocketTestClient.connect(port: fixture.port, token: token)
        defer { Task { await phone.close(); await laptop.close() } }
        let slot = try #require(try fixture.slot(of: "maria"))
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        try fixture.deliver(seq: 11, text: "both devices", slots: [slot], over: nats)
        for device in [phone, laptop] {
            #expect(eventually(timeout: .seconds(5)) { device.texts.contains { $0.contains("both devices") } })
            #expect(device.texts.first?.contains(#""type":"hello""#) == true)
        }
        try await phone.send(text: #"{"type":"ping"}"#)
        #expect(eventually(timeout: .seconds(5)) { phone.texts.contains(#"{"type":"pong"}"#) })
        // A refused upgrade is reported with its status.
        do {
            _ = try await NIOWebSocketTestClient.connect(port: fixture.port, token: "forged")
            Issue.record("forged token upgraded")
        } catch WebSocketClientError.refused(let status) {
            #expect(status == .unauthorized)
        }
        fixture.notifier.send(SIGTERM)
        #expect(eventually(timeout: .seconds(5)) { phone.serverCloseCode == 4000 && laptop.serverCloseCode == 4000 })
        #expect(fixture.notifier.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test func presenceIsRegisteredOnFirstSocketAndRemovedAfterTheLast() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let deltas = DeltaRecorder()
        let subscriber = try RedisSubscriber(url: fixture.redis.url, channels: [PresenceKeys.channel]) { event in
            if case .message(_, let payload) = event, let delta = try? PresenceDelta(decoding: payload) { deltas.append(delta) }
        }
        defer { subscriber.stop() }
        let redis = try fixture.redisConnection()
        defer { redis.close() }
        #expect(eventually(timeout: .seconds(3)) { (try? redis.command(["ZSCORE", PresenceKeys.instances, "n1"]))?.text != nil })
        let epochText = try #require(try redis.command(["GET", PresenceKeys.epoch(instance: "n1")]).text)
        let epoch = try #require(UInt64(epochText))
        try await Task.sleep(for: .milliseconds(300))  // the subscription is confirmed

        let token = try await fixture.token("dave")
        let phone = try fixture.connect(token)
        let laptop = try fixture.connect(token)
        let slot = try #require(try fixture.slot(of: "dave"))
        #expect(eventually(timeout: .seconds(3)) { deltas.all.contains { $0.userID == "dave" && $0.state == .online } })
        #expect(deltas.all.filter { $0.userID == "dave" }.count == 1)  // the second device is not news
        #expect(deltas.all.first { $0.userID == "dave" } == PresenceDelta(instanceID: "n1", epoch: epoch, userID: "dave", slot: slot, state: .online))

        try phone.sendClose()
        _ = try phone.receiveClose()
        try await Task.sleep(for: .milliseconds(300))
        #expect(try redis.command(["HGET", PresenceKeys.users(instance: "n1"), "dave"]).text == String(slot))
        try laptop.sendClose()
        _ = try laptop.receiveClose()
        #expect(eventually(timeout: .seconds(3)) { (try? redis.command(["HGET", PresenceKeys.users(instance: "n1"), "dave"]))?.text == nil })
        #expect(eventually(timeout: .seconds(3)) { deltas.all.contains { $0.userID == "dave" && $0.state == .offline && $0.slot == slot } })
    }

    @Test func presenceIsReRegisteredWhenRedisComesBackEmpty() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("erin"))
        let slot = try #require(try fixture.slot(of: "erin"))
        fixture.shutDownRedis()
        try fixture.redis.restart()  // all data lost
        #expect(try fixture.slot(of: "erin", timeout: .seconds(8)) == slot)
        let redis = try fixture.redisConnection()
        defer { redis.close() }
        #expect(eventually(timeout: .seconds(3)) { (try? redis.command(["ZSCORE", PresenceKeys.instances, "n1"]))?.text != nil })
        #expect(try redis.command(["GET", PresenceKeys.epoch(instance: "n1")]).text == "1")
        // The socket was served throughout.
        try client.send(text: #"{"type":"ping"}"#)
        #expect(try client.receiveText() == #"{"type":"pong"}"#)
    }

    @Test func readinessFollowsNATSAndSocketsAreAskedToResumeAfterItReconnects() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("lena"))
        _ = try #require(try fixture.slot(of: "lena"))
        fixture.nats.process.stop()
        #expect(eventually(timeout: .seconds(5)) { (try? HTTPProbe.get(port: UInt16(fixture.port), path: "/readyz"))?.status == 503 })
        try fixture.nats.restart()
        #expect(HTTPProbe.waitFor200(port: UInt16(fixture.port), path: "/readyz", timeout: .seconds(10)))
        // Deliveries sent while the connection was down are lost: the socket is told to
        // reconnect (and resume), and the new socket gets deliveries again.
        #expect(try client.receiveClose(timeout: .seconds(5))?.closeCode == 4000)
        #expect(fixture.metric(#"switchboard_notifier_closes_total{reason="nats_reconnect"}"#) == 1)
        let again = try fixture.connect(try await fixture.token("lena"))
        let slot = try #require(try fixture.slot(of: "lena"))
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        try fixture.deliver(seq: 1, text: "after the outage", slots: [slot], over: nats)
        #expect(try again.receiveText()?.contains("after the outage") == true)
    }

    @Test func clientTypingIsPublishedOnThePartitionSubject() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let received = DeltaRecorder.Messages()
        let subscription = try nats.subscribe("chat.typing.*.general") { received.append($0) }
        defer { subscription.unsubscribe() }
        try nats.flush(timeout: .seconds(2))
        let client = try fixture.connect(try await fixture.token("frank"))
        try client.send(text: #"{"type":"typing","channel":"general"}"#)
        try client.send(text: #"{"type":"typing","channel":"bad channel"}"#)
        #expect(try client.receiveText()?.contains(#""code":"invalid_channel""#) == true)
        #expect(eventually(timeout: .seconds(3)) { received.count == 1 })
        let message = try #require(received.first)
        let p = Int(fnv1a("general") % 16)
        #expect(message.subject == "chat.typing.\(p).general")
        #expect(try Typing(decoding: message.payload) == Typing(channelID: "general", userID: "frank"))
    }

    @Test func oversizedFrameIsClosedWith1009() async throws {
        let fixture = try await NotifierFixture(arguments: ["--max-frame-bytes", "1024"])
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("gina"))
        try client.send(text: String(repeating: "x", count: 4096))
        let close = try #require(try client.receiveClose())
        #expect(close.closeCode == 1009)
    }

    @Test func fragmentedMessageOverTheLimitIsClosedWith1009ThoughEachFragmentIsUnder() async throws {
        let fixture = try await NotifierFixture(arguments: ["--max-frame-bytes", "1024"])
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("gail"))
        // A message in fragments under the limit altogether is one message.
        let ping = Array(#"{"type":"ping"}"#.utf8)
        try client.send(opcode: 0x1, payload: Array(ping[..<5]), fin: false)
        try client.send(opcode: 0x0, payload: Array(ping[5...]), fin: true)
        #expect(try client.receiveText() == #"{"type":"pong"}"#)
        // Three fragments of 600 bytes: each under 1024, the message over it.
        let fragment = [UInt8](repeating: UInt8(ascii: "x"), count: 600)
        try client.send(opcode: 0x1, payload: fragment, fin: false)
        try client.send(opcode: 0x0, payload: fragment, fin: false)
        try? client.send(opcode: 0x0, payload: fragment, fin: true)
        let close = try #require(try client.receiveClose())
        #expect(close.closeCode == 1009)
    }

    @Test func floodingClientIsClosedWith1008() async throws {
        let fixture = try await NotifierFixture(arguments: ["--max-inbound-per-second", "5"])
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("hank"))
        for _ in 0..<50 { try? client.send(text: #"{"type":"ping"}"#) }
        let close = try #require(try client.receiveClose())
        #expect(close.closeCode == 1008)
        #expect(eventually(timeout: .seconds(2)) { fixture.metric(#"switchboard_notifier_closes_total{reason="rate_limit"}"#) == 1 })
    }

    @Test func slowConsumerIsClosedWith4008WhileOthersKeepReceiving() async throws {
        let fixture = try await NotifierFixture(arguments: ["--outbound-buffer-bytes", "1048576"])
        defer { fixture.stop() }
        let slow = try fixture.connect(try await fixture.token("slow"), receiveBuffer: 4096)
        let fast = try fixture.connect(try await fixture.token("fast"))
        let slots = [try #require(try fixture.slot(of: "slow")), try #require(try fixture.slot(of: "fast"))]
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        // ~24 MB to each socket: more than the kernel buffers of a socket nobody reads.
        let text = String(repeating: "z", count: 32_768)
        let count = 750
        let progress = NIOLockedValueBox(0)
        let reader = Task.detached { () -> Int in
            var received = 0
            while received < count, let frame = try fast.receiveText(timeout: .seconds(10)) {
                if frame.hasPrefix(#"{"type":"event""#) { received += 1; progress.withLockedValue { $0 = received } }
            }
            return received
        }
        for seq in 1...count {
            try fixture.deliver(seq: UInt64(seq), text: text, slots: slots, over: nats)
            // The fast client must really be fast: on a loaded machine its reading thread could
            // fall 1 MB behind and be closed as a slow consumer too. Keep it within 16 frames.
            if seq % 8 == 0 { _ = eventually(timeout: .seconds(10)) { progress.withLockedValue { $0 } >= seq - 16 } }
        }
        #expect(eventually(timeout: .seconds(10)) { fixture.metric(#"switchboard_notifier_closes_total{reason="slow_consumer"}"#) == 1 })
        // The fast client got every frame even though the slow one stalled.
        #expect(try await reader.value == count)
        // The slow client, reading at last, finds the frames it had and then close 4008.
        let (texts, close) = try slow.drainUntilClose(timeout: .seconds(10))
        #expect(close?.closeCode == 4008)
        #expect(close?.closeReason == "slow consumer")
        #expect(texts < count)
    }

    @Test func silentSocketIsClosedAfterTwoHeartbeats() async throws {
        let fixture = try await NotifierFixture(arguments: ["--heartbeat-seconds", "0.3"])
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("ivan"))
        // The raw client never answers pings.
        let started = ContinuousClock.now
        let close = try #require(try client.receiveClose(timeout: .seconds(5)))
        #expect(close.closeCode == 4001)
        #expect(ContinuousClock.now - started >= .milliseconds(500))
    }

    @Test func connectionsOverTheLimitGet503() async throws {
        let fixture = try await NotifierFixture(arguments: ["--max-connections", "1"])
        defer { fixture.stop() }
        let first = try fixture.connect(try await fixture.token("judy"))
        let token = try await fixture.token("kim")
        do {
            _ = try WebSocketTestClient(port: fixture.port, headers: ["Authorization": "Bearer \(token)"])
            Issue.record("second connection was accepted")
        } catch WebSocketTestClient.Failure.refused(let status, _, _) {
            #expect(status == 503)
        }
        #expect(fixture.metric(#"switchboard_notifier_refusals_total{kind="max_connections"}"#) == 1)
        try first.sendClose()
        _ = try first.receiveClose()
        // The place is free again.
        #expect(eventually(timeout: .seconds(3)) { (try? WebSocketTestClient(port: fixture.port, headers: ["Authorization": "Bearer \(token)"])) != nil })
    }

    @Test func sigtermClosesSocketsWith4000DeregistersAndExitsZero() async throws {
        let fixture = try await NotifierFixture(arguments: ["--drain-seconds", "1"])
        defer { fixture.stop() }
        let deltas = DeltaRecorder()
        let subscriber = try RedisSubscriber(url: fixture.redis.url, channels: [PresenceKeys.channel]) { event in
            if case .message(_, let payload) = event, let delta = try? PresenceDelta(decoding: payload) { deltas.append(delta) }
        }
        defer { subscriber.stop() }
        let clients = try await (0..<4).asyncMap { try fixture.connect(try await fixture.token("user\($0)")) }
        _ = try fixture.slot(of: "user3")
        try await Task.sleep(for: .milliseconds(200))
        fixture.notifier.send(SIGTERM)
        for client in clients {
            let close = try #require(try client.receiveClose(timeout: .seconds(5)))
            #expect(close.closeCode == 4000)
            #expect(close.closeReason == "reconnect")
            try? client.sendClose(code: 4000)
        }
        #expect(fixture.notifier.waitForExit(timeout: .seconds(10)) == 0)
        let redis = try fixture.redisConnection()
        defer { redis.close() }
        #expect(try redis.command(["EXISTS", PresenceKeys.users(instance: "n1")]).integer == 0)
        #expect(try redis.command(["ZSCORE", PresenceKeys.instances, "n1"]).text == nil)
        #expect(eventually(timeout: .seconds(2)) { deltas.all.contains { $0.state == .instanceDown && $0.instanceID == "n1" } })
    }

    @Test func drainingNotifierKeepsListeningAndAnswers503UntilItsSocketsAreClosed() async throws {
        let fixture = try await NotifierFixture(arguments: ["--drain-seconds", "0.5"])
        defer { fixture.stop() }
        // This client never answers the close frame: the drain lasts until the notifier's
        // close handshake timeout ends the connection.
        let lingering = try fixture.connect(try await fixture.token("lena"))
        let token = try await fixture.token("otto")
        fixture.notifier.send(SIGTERM)
        let close = try #require(try lingering.receiveClose(timeout: .seconds(5)))
        #expect(close.closeCode == 4000)
        // Draining: the listener still answers, not ready, and refuses upgrades with 503.
        let readiness = try HTTPProbe.get(port: UInt16(fixture.port), path: "/readyz")
        #expect(readiness.status == 503)
        do {
            _ = try WebSocketTestClient(port: fixture.port, headers: ["Authorization": "Bearer \(token)"])
            Issue.record("upgrade accepted while draining")
        } catch WebSocketTestClient.Failure.refused(let status, _, let body) {
            #expect(status == 503)
            #expect(body.contains("draining"))
        }
        #expect(try HTTPProbe.get(port: UInt16(fixture.port), path: "/healthz").status == 200)
        // Once the drain ends the process exits and the port is closed.
        #expect(fixture.notifier.waitForExit(timeout: .seconds(15)) == 0)
        #expect((try? HTTPProbe.get(port: UInt16(fixture.port), path: "/readyz")) == nil)
    }

    @Test func resumeReplaysMissedEventsFromJetStreamOnlyForMembers() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let jetStream = try fixture.chatStreams(over: nats)
        try fixture.publishMembership("general", "alice", over: jetStream)
        for i in 1...5 { try fixture.publishEvent("e\(i)", over: jetStream) }
        let client = try fixture.connect(try await fixture.token("alice"))
        try client.send(text: #"{"type":"resume","channel":"general","after_seq":2}"#)
        let replay = try fixture.frames(client, until: "resumed")
        let seqs = replay.filter { $0["type"] as? String == "event" }.map { $0["seq"] as? Int ?? -1 }
        let resumed = try #require(replay.last)
        #expect(seqs == [3, 4, 5])
        #expect(resumed["seq"] as? Int == 5)
        #expect(resumed["replayed"] as? Int == 3)
        #expect(resumed["complete"] as? Bool == true)
        // Up to date: nothing to replay.
        try client.send(text: #"{"type":"resume","channel":"general","after_seq":5}"#)
        let epoch = StreamEpoch.of(createdNs: try jetStream.streamState(StreamNames.events).createdNs)
        #expect(try client.receiveText() == #"{"type":"resumed","channel":"general","seq":5,"replayed":0,"complete":true,"epoch":"\#(epoch)"}"#)
        // Not a member: no events of that channel leak.
        try client.send(text: #"{"type":"resume","channel":"secret","after_seq":0}"#)
        #expect(try client.receiveText()?.contains(#""code":"not_member""#) == true)
    }

    /// Positions a client can check: replayed frames chain with `prev` from the seq the client
    /// resumed after and carry the stream's epoch; a resume naming another epoch replays
    /// nothing and says so; live frames carry what the fan-out's inbox message says.
    @Test func framesCarryPrevAndEpochAndAResumeOfAnotherEpochReplaysNothing() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let jetStream = try fixture.chatStreams(over: nats)
        let epoch = StreamEpoch.of(createdNs: try jetStream.streamState(StreamNames.events).createdNs)
        try fixture.publishMembership("general", "alice", over: jetStream)
        let seqs = try (1...4).map { try fixture.publishEvent("e\($0)", over: jetStream) }
        let client = try fixture.connect(try await fixture.token("alice"))
        try client.send(text: #"{"type":"resume","channel":"general","after_seq":\#(seqs[0]),"epoch":"\#(epoch)"}"#)
        let replay = try fixture.frames(client, until: "resumed")
        let events = replay.filter { $0["type"] as? String == "event" }
        #expect(events.compactMap { ($0["seq"] as? NSNumber)?.uint64Value } == Array(seqs.dropFirst()))
        #expect(events.compactMap { ($0["prev"] as? NSNumber)?.uint64Value } == Array(seqs.dropLast()))
        #expect(events.allSatisfy { $0["epoch"] as? String == epoch })
        #expect(replay.last?["epoch"] as? String == epoch)
        #expect(replay.last?["complete"] as? Bool == true)

        try client.send(text: #"{"type":"resume","channel":"general","after_seq":1,"epoch":"an-older-stream"}"#)
        let other = try #require(try fixture.frames(client, until: "resumed").last)
        #expect(other["complete"] as? Bool == false)
        #expect(other["reason"] as? String == "epoch_changed")
        #expect(other["epoch"] as? String == epoch)
        #expect(other["replayed"] as? Int == 0)
        #expect(fixture.metric(#"switchboard_notifier_resumes_total{outcome="epoch_changed"}"#) == 1)

        // A malformed epoch is refused in the URL and in the frame.
        let bad = try fixture.connectReadingHello(try await fixture.token("alice"), query: "resume=general:1&epoch=not.valid").client
        #expect(try fixture.frames(bad, until: "error").last?["code"] as? String == "bad_resume")
        try client.send(text: #"{"type":"resume","channel":"general","after_seq":1,"epoch":""}"#)
        #expect(try fixture.frames(client, until: "error").last?["code"] as? String == "bad_resume")

        // Live: what the inbox message says, and a new socket's hello names the newest epoch.
        let slot = try #require(try fixture.slot(of: "alice"))
        let event = ChatEvent(eventID: "live", channelID: "general", senderID: "bob", createdAtMs: 9, body: .messageCreated(messageID: "m", text: "t"))
        let message = Deliveries(epoch: "a-new-stream", deliveries: [Delivery(streamSeq: 3, channelID: "general", event: event.encoded(), slots: [slot], prevSeq: 1)])
        try nats.publish(Subjects.inbox(instance: fixture.instanceID), payload: message.encoded())
        let live = try #require(try fixture.frames(client, until: "event").last)
        #expect((live["seq"] as? NSNumber)?.uint64Value == 3)
        #expect((live["prev"] as? NSNumber)?.uint64Value == 1)
        #expect(live["epoch"] as? String == "a-new-stream")
        let hello = try fixture.connectReadingHello(try await fixture.token("carol")).hello
        #expect(hello.contains(#""epoch":"a-new-stream""#), "\(hello)")

        // Its own event sent without echo: the position only.
        let own = Deliveries(epoch: "a-new-stream", deliveries: [Delivery(streamSeq: 4, channelID: "general", event: [], slots: [], prevSeq: 3, positionSlots: [slot])])
        try nats.publish(Subjects.inbox(instance: fixture.instanceID), payload: own.encoded())
        #expect(try client.receiveText() == #"{"type":"position","channel":"general","seq":4,"prev":3,"epoch":"a-new-stream"}"#)
    }

    /// A user's view of a channel starts at its first event after the user's current join:
    /// a resume from before it replays only what came after, and says so.
    @Test func resumeLeavesOutEventsFromBeforeTheUsersJoinAndSaysSo() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let jetStream = try fixture.chatStreams(over: nats)
        try fixture.publishEvent("before-1", over: jetStream)
        try fixture.publishEvent("before-2", over: jetStream)
        try fixture.publishMembership("general", "alice", over: jetStream)
        let after = [try fixture.publishEvent("after-1", over: jetStream), try fixture.publishEvent("after-2", over: jetStream)]
        let client = try fixture.connect(try await fixture.token("alice"))
        try client.send(text: #"{"type":"resume","channel":"general","after_seq":0}"#)
        let replay = try fixture.frames(client, until: "resumed")
        let seqs = replay.filter { $0["type"] as? String == "event" }.compactMap { ($0["seq"] as? NSNumber)?.uint64Value }
        let resumed = try #require(replay.last)
        #expect(seqs == after)
        #expect(resumed["complete"] as? Bool == false)
        #expect(resumed["reason"] as? String == "membership")
        #expect((resumed["seq"] as? NSNumber)?.uint64Value == after.last)
    }

    @Test func pythonWebsocketsClientReceivesEventsAndIsRefusedWithoutAToken() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let token = try await fixture.token("pyuser")
        let script = fixture.directory.url.appendingPathComponent("client.py")
        try PythonPeer.script.write(to: script, atomically: true, encoding: .utf8)
        let output = fixture.directory.url.appendingPathComponent("client.out")
        let interpreter = try #require(PythonPeer.interpreter(), "no python3 with the 'websockets' package (scripts/deps installs it)")
        let python = try ServerProcess(
            name: "python-client", executable: interpreter,
            arguments: [script.path, "\(fixture.port)", token, output.path],
            logURL: fixture.directory.url.appendingPathComponent("python.log")
        )
        defer { python.stop() }
        let slot = try #require(try fixture.slot(of: "pyuser", timeout: .seconds(10)), "python client did not connect: \(python.log())")
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        try fixture.deliver(seq: 42, channel: "py", text: "from swift ✓", slots: [slot], over: nats)
        #expect(python.waitForExit(timeout: .seconds(10)) == 0, "\(python.log())")
        let lines = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.first == "refused 401 missing_token")
        #expect(lines.contains { $0.hasPrefix("hello ") && $0.contains("pyuser") })
        #expect(lines.contains("event py 42 from swift ✓"))
        #expect(lines.contains("pong"))
    }
}

/// The Python peer: the `websockets` package from PyPI, as an independent client.
enum PythonPeer {
    /// The first `python3` on PATH (or `$SWITCHBOARD_PYTHON`) that can import `websockets`:
    /// a test runner's PATH may list a system python before the one pip installed into.
    static func interpreter() -> String? {
        let environment = ProcessInfo.processInfo.environment
        var candidates: [String] = environment["SWITCHBOARD_PYTHON"].map { [$0] } ?? []
        let path = environment["PATH"] ?? ""
        for dir in path.split(separator: ":") + ["\(environment["HOME"] ?? "/root")/.pyenv/shims", "/usr/local/bin", "/usr/bin"] {
            candidates.append("\(dir)/python3")
        }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: candidate)
            process.arguments = ["-c", "import websockets"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { continue }
            process.waitUntilExit()
            if process.terminationStatus == 0 { return candidate }
        }
        return nil
    }

    static let script = #"""
import asyncio, json, sys
import websockets

port, token, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"ws://127.0.0.1:{port}/ws"

async def main():
    lines = []
    try:
        async with websockets.connect(url):
            lines.append("accepted without token")
    except websockets.exceptions.InvalidStatus as e:
        lines.append(f"refused {e.response.status_code} {e.response.headers.get('X-Switchboard-Auth-Error')}")
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        hello = json.loads(await ws.recv())
        lines.append(f"hello {hello['instance']} {hello['user']} {hello['heartbeat_s']}")
        await ws.send(json.dumps({"type": "ping"}))
        # The pong and the delivered event may arrive in either order.
        seen = set()
        while seen != {"pong", "event"}:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            seen.add(frame["type"])
            if frame["type"] == "event":
                lines.append(f"event {frame['channel']} {frame['seq']} {frame['event']['text']}")
            else:
                lines.append(frame["type"])
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

asyncio.run(main())
"""#
}

/// Collects values from another thread.
final class DeltaRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var deltas: [PresenceDelta] = []
    func append(_ delta: PresenceDelta) { lock.withLock { deltas.append(delta) } }
    var all: [PresenceDelta] { lock.withLock { deltas } }

    final class Messages: @unchecked Sendable {
        private let lock = NSLock()
        private var messages: [NATSMessage] = []
        func append(_ message: NATSMessage) { lock.withLock { messages.append(message) } }
        var count: Int { lock.withLock { messages.count } }
        var first: NATSMessage? { lock.withLock { messages.first } }
    }
}

func fnv1a(_ text: String) -> UInt32 {
    var hash: UInt32 = 0x811c_9dc5
    for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
    return hash
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
