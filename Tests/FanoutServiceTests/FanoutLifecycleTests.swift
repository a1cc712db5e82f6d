import Foundation
import NATSClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing

/// The fan-out as an operator sees it over its life: gauges that follow the table, positions
/// that survive a restart from snapshots, a bounded SIGTERM, and the command line.
@Suite(.serialized) struct FanoutLifecycleTests {
    /// The value of an unlabelled gauge in Prometheus text, or nil when absent.
    func gauge(_ name: String, in metrics: String) -> Double? {
        for line in metrics.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    @Test func tableGaugesFollowMembershipAndPresenceChangesAfterStartUp() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.startFanout()
        let port = try #require(harness.httpPort())
        let before = try HTTPProbe.get(port: port, path: "/metrics").body
        #expect(gauge("switchboard_fanout_memberships", in: before) == 0)
        #expect(gauge("switchboard_fanout_online_users", in: before) == 0)

        for user in ["alice", "bob", "carol"] { try harness.join(user, "general") }
        try harness.join("alice", "random")
        try harness.goOnline(instance: "n1", users: ["alice": 1, "bob": 2])
        var metrics = ""
        let current = eventually(timeout: .seconds(10)) {
            metrics = try HTTPProbe.get(port: port, path: "/metrics").body
            return gauge("switchboard_fanout_memberships", in: metrics) == 4
                && gauge("switchboard_fanout_channels", in: metrics) == 2
                && gauge("switchboard_fanout_online_users", in: metrics) == 2
                && gauge("switchboard_fanout_instances", in: metrics) == 1
        }
        #expect(current, "\(metrics)")
        #expect(try #require(gauge("switchboard_fanout_table_bytes", in: metrics)) > 0)
    }

    @Test func statsReportTheSnapshotSequenceAfterARestartFromSnapshots() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        for index in 0..<60 { try harness.join("user\(index % 7)", "chan\(index % 11)", version: UInt64(1 + index)) }
        let last = try harness.jetStream.streamState(StreamNames.membership).lastSequence
        let first = try harness.startFanout(extra: ["--snapshot-every-changes", "1", "--snapshot-interval-seconds", "1"])
        let partitions = Set((0..<11).map { Partitioner.partition(of: "chan\($0)", count: FanoutHarness.partitionCount) })
        #expect(eventually(timeout: .seconds(15)) { harness.snapshotManifests() == partitions.count })
        #expect(try harness.inspect(Inspection.statsSubject, as: Inspection.Stats.self).membershipSequence == last)
        first.stop()

        try harness.startFanout(name: "fanout-b")
        #expect(harness.fanoutLog("fanout-b").contains("snapshot loaded"))
        #expect(try harness.inspect(Inspection.statsSubject, as: Inspection.Stats.self).membershipSequence == last)
    }

    @Test func sigtermStopsEveryPartWithinTheBudgetAndDrainsTheConnection() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.join("alice", "general")
        try harness.goOnline(instance: "n1", users: ["alice": 1])
        let fanout = try harness.startFanout()
        for index in 0..<20 { try harness.publishEvent(channel: "general", text: "m\(index)") }
        #expect(eventually(timeout: .seconds(10)) { harness.deliveries("n1").count == 20 })
        fanout.send(SIGTERM)
        #expect(fanout.waitForExit(timeout: .seconds(15)) == 0, "\(fanout.log())")
        let log = fanout.log()
        #expect(log.contains("fan-out stopped"))
        #expect(!log.contains("without drain"))
        #expect(!log.contains("did not stop cleanly"))
        let partition = Partitioner.partition(of: "general", count: FanoutHarness.partitionCount)
        #expect(harness.jetStreamConsumerPending(partition: partition) == 0)
    }

    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32?, output: String) {
        let logs = try TemporaryDirectory(prefix: "switchboard-test-cli")
        defer { logs.remove() }
        let process = try ServerProcess(name: executable, executable: BuiltProducts.path(executable), arguments: arguments, logURL: logs.url.appendingPathComponent("log"))
        let status = process.waitForExit(timeout: .seconds(10))
        return (status, process.log())
    }

    @Test func helpPrintsTheOptionsAndExitsZero() throws {
        let fanout = try run("fanout", ["--help"])
        #expect(fanout.status == 0)
        #expect(fanout.output.contains("--nats-url") && fanout.output.contains("--partitions"), "\(fanout.output)")
        let routectl = try run("routectl", ["--help"])
        #expect(routectl.status == 0)
        #expect(routectl.output.contains("stats"), "\(routectl.output)")
    }

    @Test func unknownFlagOrInvalidValueExitsOneWithOneLine() throws {
        for (executable, arguments, expected) in [
            ("fanout", ["--no-such-flag"], "no-such-flag"),
            ("fanout", ["--partition-count", "many"], "many"),
            ("routectl", ["stats", "--no-such-flag"], "no-such-flag"),
            ("routectl", ["stats", "--timeout", "soon"], "soon"),
        ] {
            let result = try run(executable, arguments)
            #expect(result.status == 1, "\(executable) \(arguments): \(result.output)")
            let lines = result.output.split(separator: "\n")
            #expect(lines.count == 1, "\(executable) \(arguments): \(result.output)")
            #expect(result.output.hasPrefix("\(executable): ") && result.output.contains(expected), "\(result.output)")
        }
    }
}
