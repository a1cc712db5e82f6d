import Foundation
import SwitchboardContracts
import SwitchboardHarness
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension EndToEnd {
    /// SIGKILL of the `CHAT_EVENTS` stream leader, one node of three, while events flow:
    /// streams are R3 and every service holds a multi-URL connection, so no acknowledged
    /// event is lost and each client sees every channel's events in stream order (clients
    /// behave as documented: on 4000 they reconnect and resume).
    @Test func killingOneNATSNodeOfThreeLosesNoEventAndKeepsChannelOrder() async throws {
        let deployment = try await Deployment(topology: .cluster)
        defer { deployment.stop() }
        let cluster = try #require(deployment.cluster)
        let channels = ["room-a", "room-b"]
        let (alice, bob, ready) = try await deployment.aliceOnN1AndBobOnN2(of: channels, reconnects: true)
        defer { alice.stop(); bob.stop() }
        #expect(ready)

        let flow = EventFlow(deployment, channels: channels, interval: .milliseconds(20), prefix: "cluster")
        defer { flow.stop() }
        #expect(flow.waitForMore(40))
        // The victim: the node serving the most service connections (the fan-out, notifiers),
        // the CHAT_EVENTS stream leader first among equals, so that both the services'
        // reconnection and a stream leader election are exercised as far as placement allows.
        let leaderName = try #require(Self.streamLeader(deployment, StreamNames.events))
        let connections = cluster.nodes.map { Self.connectionNames(port: $0.monitorPort) }
        func weight(_ index: Int) -> Int {
            2 * connections[index].filter { $0.hasPrefix("notifier-") || $0.hasPrefix("fanout-") }.count + (cluster.nodes[index].name == leaderName ? 1 : 0)
        }
        let victim = try #require(cluster.nodes.indices.max { weight($0) < weight($1) })
        let victimConnections = connections[victim]
        let ackedBeforeKill = flow.acknowledged.count
        let killedAt = ContinuousClock.now
        cluster.kill(victim)
        let resumed = eventually(timeout: .seconds(30)) { flow.acknowledged.count > ackedBeforeKill + 1 }
        let publishGapMs = milliseconds(killedAt)
        #expect(resumed, "publishing did not resume after the leader was killed")
        #expect(flow.waitForMore(100, timeout: .seconds(30)))
        flow.stop()
        let published = flow.acknowledged
        #expect(flow.failed.isEmpty, "given up: \(flow.failed.prefix(3))")

        let expectedIDs = Set(published.map(\.eventID))
        let allDelivered = eventually(timeout: .seconds(30)) { alice.eventIDs.isSuperset(of: expectedIDs) && bob.eventIDs.isSuperset(of: expectedIDs) }
        let lost = expectedIDs.subtracting(alice.eventIDs).union(expectedIDs.subtracting(bob.eventIDs))
        let missingAlice = expectedIDs.subtracting(alice.eventIDs).count
        let missingBob = expectedIDs.subtracting(bob.eventIDs).count
        // Deliveries in flight on the killed node are lost on the way; the notifiers that
        // reconnect ask their sockets to reconnect and resume, which replays them.
        #expect(allDelivered, "lost \(lost.sorted()): alice \(missingAlice), bob \(missingBob) of \(expectedIDs.count)\n\(Self.traffic(deployment, cluster))\n\(deployment.logsText())")
        for client in [alice, bob] {
            for channel in channels {
                let received = client.events(in: channel)
                // The client drops repeats (at-least-once); what remains is the stream's order
                // (of the events it got: losses are checked above).
                let delivered = flow.acknowledged(in: channel).filter { client.eventIDs.contains($0.eventID) }.map(\.seq)
                #expect(received.firstSeen == delivered, "\(client.user) \(channel)")
                #expect(received.chainBreaks.isEmpty, "\(client.user) \(channel): prev breaks \(received.chainBreaks.prefix(3))")
            }
        }
        let gaps = deployment.fanoutHTTPPort().map { Self.counters(port: $0, ["switchboard_fanout_delivery_gaps_total", "switchboard_fanout_events_read_after_gap_total", "switchboard_fanout_redeliveries_skipped_total"]) } ?? [:]
        report("NATS node kill (\(cluster.nodes[victim].name); stream leader was \(leaderName); connections on it: \(victimConnections)): \(published.count) events acknowledged, publish resumed \(publishGapMs) ms after the kill (first ack after), lost alice \(missingAlice) bob \(missingBob), duplicate frames alice \(alice.events.duplicates) bob \(bob.events.duplicates), gaps healed by prev alice \(alice.gaps) bob \(bob.gaps), resumes refused (then retried) alice \(alice.refusals) bob \(bob.refusals); fan-out \(gaps.sorted { $0.key < $1.key }.map { "\($0.key.replacingOccurrences(of: "switchboard_fanout_", with: "")) \($0.value)" }.joined(separator: ", "))")
    }

    /// SIGSTOP of the only nats-server for 5 s, then SIGCONT: the services recover without a
    /// restart, events acknowledged just before the pause arrive, and so do later ones.
    @Test func pausedNATSServerRecoversWithoutRestartAndLosesNothing() async throws {
        let deployment = try await Deployment()
        defer { deployment.stop() }
        let nats = try #require(deployment.single)
        let (alice, bob, ready) = try await deployment.aliceOnN1AndBobOnN2(of: ["room-a"], reconnects: true)
        defer { alice.stop(); bob.stop() }
        #expect(ready)
        let pids = [deployment.fanout()?.pid, deployment.notifier("n1")?.pid, deployment.notifier("n2")?.pid]

        var published: Set<String> = []
        for index in 0..<5 {
            published.insert("before-\(index)")
            _ = try deployment.publishEvent(channel: "room-a", id: "before-\(index)")
        }
        #expect(eventually(timeout: .seconds(5)) { alice.events.count == 5 && bob.events.count == 5 })
        // Events keep coming across the pause: those in flight when the server freezes time
        // out and are retried with the same id, and land once it thaws.
        let flow = EventFlow(deployment, channels: ["room-a"], interval: .milliseconds(20), prefix: "paused")
        defer { flow.stop() }
        #expect(flow.waitForMore(20))
        let ackedBeforePause = flow.acknowledged.count
        nats.process.send(SIGSTOP)
        usleep(5_000_000)  // the fault: the server is frozen for 5 s
        nats.process.send(SIGCONT)
        let continued = ContinuousClock.now
        #expect(eventually(timeout: .seconds(10)) { flow.acknowledged.count > ackedBeforePause + 1 })
        let publishingAfter = milliseconds(continued)
        #expect(flow.waitForMore(30))
        flow.stop()
        #expect(flow.failed.isEmpty, "given up: \(flow.failed.prefix(3))")
        published.formUnion(flow.acknowledged.map(\.eventID))
        let expected = published
        let delivered = eventually(timeout: .seconds(20)) { alice.eventIDs == expected && bob.eventIDs == expected }
        let recoveredAfter = milliseconds(continued)
        #expect(delivered, "alice missing \(expected.subtracting(alice.eventIDs).sorted()), bob missing \(expected.subtracting(bob.eventIDs).sorted())\n\(deployment.logsText())")
        for client in [alice, bob] {
            let firstSeen = client.events.firstSeen
            #expect(zip(firstSeen, firstSeen.dropFirst()).allSatisfy { $0 < $1 }, "\(client.user) out of order: \(client.events.seqs)")
        }
        // Same processes, still serving: nothing was restarted.
        #expect([deployment.fanout()?.pid, deployment.notifier("n1")?.pid, deployment.notifier("n2")?.pid] == pids)
        #expect(deployment.fanout()?.isRunning == true && deployment.notifier("n1")?.isRunning == true && deployment.notifier("n2")?.isRunning == true)
        #expect(HTTPProbe.waitFor200(port: deployment.fanoutHTTPPort()!, path: "/readyz", timeout: .seconds(10)))
        #expect(HTTPProbe.waitFor200(port: UInt16(deployment.port("n1")), path: "/readyz", timeout: .seconds(10)))
        report("NATS SIGSTOP 5 s: publishing acked again \(publishingAfter) ms after SIGCONT; all \(expected.count) events delivered \(recoveredAfter) ms after SIGCONT; duplicate frames alice \(alice.events.duplicates) bob \(bob.events.duplicates)")
    }

    /// Totals of `names` in a service's `/metrics` (Prometheus text), summed over labels.
    static func counters(port: UInt16, _ names: [String]) -> [String: Double] {
        guard let body = try? HTTPProbe.get(port: port, path: "/metrics").body else { return [:] }
        var totals: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[parts.count - 1]) else { continue }
            let name = String(parts[0].prefix { $0 != "{" })
            if names.contains(name) { totals[name, default: 0] += value }
        }
        return totals
    }

    /// Where messages went, for a failure's report: every live node's client connections with
    /// the messages they sent and received, and each notifier's inbox and frame counters.
    static func traffic(_ deployment: Deployment, _ cluster: NATSClusterFixture) -> String {
        var lines: [String] = []
        for node in cluster.nodes {
            guard let response = try? HTTPProbe.get(port: node.monitorPort, path: "/connz?subs=1"),
                  let object = try? JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any],
                  let connections = object["connections"] as? [[String: Any]] else {
                lines.append("\(node.name): no /connz (killed)")
                continue
            }
            for connection in connections {
                let subjects = (connection["subscriptions_list"] as? [String] ?? []).filter { !$0.hasPrefix("_INBOX") }.prefix(4)
                lines.append("\(node.name) \(connection["name"] ?? "?"): in \(connection["in_msgs"] ?? "?"), out \(connection["out_msgs"] ?? "?"), subs \(Array(subjects))")
            }
        }
        for name in ["n1", "n2"] {
            let counters = counters(port: UInt16(deployment.port(name)), [
                "switchboard_notifier_inbox_messages_total", "switchboard_notifier_deliveries_in_total", "switchboard_notifier_frames_written_total",
                "switchboard_notifier_dropped_deliveries_total", "switchboard_notifier_closes_total",
            ])
            lines.append("\(name): \(counters.sorted { $0.key < $1.key }.map { "\($0.key.replacingOccurrences(of: "switchboard_notifier_", with: "")) \($0.value)" }.joined(separator: ", "))")
        }
        return lines.joined(separator: "\n")
    }

    /// Names of the client connections a node serves, from its monitoring `/connz`.
    static func connectionNames(port: UInt16) -> [String] {
        guard let response = try? HTTPProbe.get(port: port, path: "/connz"),
              let object = try? JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any],
              let connections = object["connections"] as? [[String: Any]] else { return [] }
        return connections.compactMap { $0["name"] as? String }.sorted()
    }

    /// The server name of a stream's leader, from `$JS.API.STREAM.INFO`.
    static func streamLeader(_ deployment: Deployment, _ stream: String) -> String? {
        guard let reply = try? deployment.connection.request("$JS.API.STREAM.INFO.\(stream)", payload: [], timeout: .seconds(2)),
              let object = try? JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any],
              let cluster = object["cluster"] as? [String: Any] else { return nil }
        return cluster["leader"] as? String
    }
}
