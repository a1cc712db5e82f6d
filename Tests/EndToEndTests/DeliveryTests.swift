import Foundation
import SwitchboardHarness
import Testing

extension EndToEnd {
    /// An event published by an independent client (nats-py) reaches exactly the sockets of
    /// the channel's online members, on both notifier instances, and no other socket.
    @Test func eventReachesEveryOnlineMemberSocketOnTwoInstancesAndNoOtherSocket() async throws {
        let deployment = try await Deployment()
        defer { deployment.stop() }
        try deployment.startFanout()
        for user in ["alice", "bob", "dave"] { try deployment.join(user, "e2e-room") }  // dave stays offline
        try deployment.join("carol", "side-room")
        #expect(eventually(timeout: .seconds(5)) { deployment.members(of: "e2e-room") == 3 && deployment.members(of: "side-room") == 1 })
        let n1 = try deployment.startNotifier("n1")
        let n2 = try deployment.startNotifier("n2")

        // alice has two devices: a Swift client on n1 and a Python `websockets` client on n2.
        let alicePhone = try await deployment.client("alice", ports: [n1])
        let aliceLaptop = try PythonPeers.start("ws_client.py", ["ws://127.0.0.1:\(n2)/ws", try await deployment.token("alice"), "30"], logs: deployment.logs)
        let bob = try await deployment.client("bob", ports: [n2])
        let carol = try await deployment.client("carol", ports: [n1])
        // eve is a member of nothing, with a socket on each notifier.
        let eveOnN1 = try await deployment.client("eve", ports: [n1])
        let eveOnN2 = try await deployment.client("eve", ports: [n2])
        let clients = [alicePhone, bob, carol, eveOnN1, eveOnN2]
        defer {
            for client in clients { client.stop() }
            aliceLaptop.stop(grace: .seconds(1))
        }
        #expect(eventually(timeout: .seconds(10)) { aliceLaptop.log().contains("CONNECTED") }, "python client: \(aliceLaptop.log())")
        let routed = eventually(timeout: .seconds(5)) {
            Set(deployment.inspectUser("alice")?.placements.map(\.instance) ?? []) == ["n1", "n2"]
                && deployment.inspectUser("bob")?.placements.map(\.instance) == ["n2"]
                && deployment.inspectUser("carol")?.placements.map(\.instance) == ["n1"]
        }
        #expect(routed, "presence did not reach the fan-out:\n\(deployment.logsText())")

        let publisher = try PythonPeers.start("publish_events.py", [deployment.natsURL, "e2e-room", "5", "py-room"], logs: deployment.logs)
        #expect(publisher.waitForExit(timeout: .seconds(20)) == 0, "publisher: \(publisher.log())")
        let side = try PythonPeers.start("publish_events.py", [deployment.natsURL, "side-room", "2", "py-side"], logs: deployment.logs)
        #expect(side.waitForExit(timeout: .seconds(20)) == 0, "publisher: \(side.log())")
        let roomAcks = Self.acks(publisher.log())
        let sideAcks = Self.acks(side.log())
        try #require(roomAcks.count == 5 && sideAcks.count == 2)

        let expectedRoom = roomAcks.map { ChatClient.Received(channel: "e2e-room", seq: $0.seq, eventID: $0.id, instance: "") }
        let delivered = eventually(timeout: .seconds(10)) {
            alicePhone.events.count >= 5 && bob.events.count >= 5 && carol.events.count >= 2
                && Self.pythonEvents(aliceLaptop.log()).count >= 5
        }
        #expect(delivered, "not every member socket got the events:\n\(deployment.logsText())")
        // Deliveries to every socket leave the notifiers together; give stray ones a moment.
        usleep(500_000)

        func stripped(_ events: [ChatClient.Received]) -> [ChatClient.Received] {
            events.map { ChatClient.Received(channel: $0.channel, seq: $0.seq, eventID: $0.eventID, instance: "") }
        }
        #expect(stripped(alicePhone.events) == expectedRoom)
        #expect(Set(alicePhone.events.map(\.instance)) == ["n1"])
        #expect(stripped(bob.events) == expectedRoom)
        #expect(Set(bob.events.map(\.instance)) == ["n2"])
        #expect(Self.pythonEvents(aliceLaptop.log()) == expectedRoom, "python client: \(aliceLaptop.log())")
        #expect(stripped(carol.events) == sideAcks.map { ChatClient.Received(channel: "side-room", seq: $0.seq, eventID: $0.id, instance: "") })
        #expect(eveOnN1.events.isEmpty && eveOnN2.events.isEmpty)
        report("delivery: 5 events to 3 member sockets on 2 instances, 2 to a side channel, 0 to 2 non-member sockets")
    }

    /// `routectl user` and `routectl channel` show a socket's connect and disconnect within 1 s.
    @Test func routectlShowsPresenceChangesWithinOneSecond() async throws {
        let deployment = try await Deployment()
        defer { deployment.stop() }
        try deployment.startFanout()
        try deployment.join("alice", "presence-room")
        try deployment.join("bob", "presence-room")
        #expect(eventually(timeout: .seconds(5)) { deployment.members(of: "presence-room") == 2 })
        let n1 = try deployment.startNotifier("n1")
        #expect(deployment.routectlPlacements("alice") == [])
        #expect(deployment.routectlOnlineMembers("presence-room") == 0)

        let alice = try await deployment.client("alice", ports: [n1])
        let connected = ContinuousClock.now
        let seenOnline = eventually(timeout: .seconds(3)) { deployment.routectlPlacements("alice") == ["n1"] }
        let onlineAfter = milliseconds(connected)
        #expect(seenOnline)
        #expect(onlineAfter <= 1000, "routectl showed alice online \(onlineAfter) ms after the connect")
        #expect(deployment.routectlOnlineMembers("presence-room") == 1)

        alice.stop()
        let disconnected = ContinuousClock.now
        let seenOffline = eventually(timeout: .seconds(3)) { deployment.routectlPlacements("alice") == [] }
        let offlineAfter = milliseconds(disconnected)
        #expect(seenOffline)
        #expect(offlineAfter <= 1000, "routectl showed alice offline \(offlineAfter) ms after the disconnect")
        #expect(deployment.routectlOnlineMembers("presence-room") == 0)
        report("presence via routectl: online after \(onlineAfter) ms, offline after \(offlineAfter) ms (each poll runs routectl as a process)")
    }

    /// "<seq> <id>" lines of publish_events.py.
    static func acks(_ log: String) -> [(seq: UInt64, id: String)] {
        log.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count == 2, let seq = UInt64(parts[0]) else { return nil }
            return (seq, String(parts[1]))
        }
    }

    /// The event frames ws_client.py printed.
    static func pythonEvents(_ log: String) -> [ChatClient.Received] {
        log.split(separator: "\n").compactMap { line in
            guard let object = ChatClient.json(String(line)), object["type"] as? String == "event",
                  let channel = object["channel"] as? String, let seq = (object["seq"] as? NSNumber)?.uint64Value,
                  let id = (object["event"] as? [String: Any])?["id"] as? String else { return nil }
            return ChatClient.Received(channel: channel, seq: seq, eventID: id, instance: "")
        }
    }
}
