import Foundation
import SwitchboardHarness
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension EndToEnd {
    /// SIGTERM drains a notifier while events flow: its clients get close 4000, reconnect to
    /// the other notifier, resume each channel from their last seq, and see every event of
    /// every channel exactly once and in order across the switch.
    @Test func drainedNotifierHandsClientsOverWithoutGapOrDuplicate() async throws {
        let deployment = try await Deployment()
        defer { deployment.stop() }
        let channels = ["room-a", "room-b"]
        #expect(try deployment.startFanout(members: ["alice", "bob"], of: channels))
        let n1 = try deployment.startNotifier("n1", drainSeconds: 0.5)
        let n2 = try deployment.startNotifier("n2")
        let clients = [
            try await deployment.client("alice", ports: [n1, n2], reconnects: true),
            try await deployment.client("bob", ports: [n1, n2], reconnects: true),
        ]
        defer { for client in clients { client.stop() } }
        #expect(eventually(timeout: .seconds(5)) {
            deployment.inspectUser("alice")?.placements.map(\.instance) == ["n1"]
                && deployment.inspectUser("bob")?.placements.map(\.instance) == ["n1"]
        })

        let flow = EventFlow(deployment, channels: channels, interval: .milliseconds(10), prefix: "rolling")
        defer { flow.stop() }
        #expect(flow.waitForMore(40))
        let n1Process = try #require(deployment.notifier("n1"))
        let drainStarted = ContinuousClock.now
        n1Process.send(SIGTERM)
        let status = n1Process.waitForExit(timeout: .seconds(10))
        let exitedAfter = milliseconds(drainStarted)
        #expect(status == 0, "drain exit status \(String(describing: status))")
        #expect(eventually(timeout: .seconds(5)) { clients.allSatisfy { $0.instance == "n2" && $0.resumed.count == channels.count } })
        #expect(flow.waitForMore(60))
        flow.stop()

        let expected = Set(flow.acknowledged.map(\.eventID))
        #expect(eventually(timeout: .seconds(15)) { clients.allSatisfy { $0.eventIDs.isSuperset(of: expected) } }, "\(deployment.logsText())")
        for client in clients {
            #expect(client.closes.first == 4000, "\(client.user) closes: \(client.closes)")
            #expect(client.resumed.allSatisfy { $0.complete }, "\(client.user): \(client.resumed)")
            #expect(client.errors.isEmpty, "\(client.user): \(client.errors)")
            for channel in channels {
                let published = flow.acknowledged(in: channel).map(\.seq)
                let received = client.events(in: channel).seqs
                let detail = "\(client.user) \(channel): \(Self.difference(received, published)); resumed \(client.resumed)"
                #expect(received == published, "\(detail)")  // raw frames: every event once, in order
                #expect(client.events(in: channel).chainBreaks.isEmpty, "\(client.user) \(channel): prev breaks")
            }
        }
        let replayed = clients.flatMap(\.resumed).map(\.replayed).reduce(0, +)
        report("rolling restart: n1 drained and exited in \(exitedAfter) ms; \(flow.acknowledged.count) events; \(replayed) replayed by resume; duplicates \(clients.map { $0.events.duplicates }); gaps healed by prev \(clients.map(\.gaps))")
    }

    /// A short description of how two seq lists differ, for failure messages.
    static func difference(_ received: [UInt64], _ published: [UInt64]) -> String {
        let missing = Set(published).subtracting(received).sorted()
        var seen = Set<UInt64>()
        let repeated = received.filter { !seen.insert($0).inserted }
        let outOfOrder = zip(received, received.dropFirst()).filter { $0 >= $1 }.map { "\($0)→\($1)" }
        return "missing \(missing.prefix(10)) (\(missing.count)), repeated \(repeated.prefix(10)) (\(repeated.count)), out of order \(outOfOrder.prefix(5))"
    }
}
