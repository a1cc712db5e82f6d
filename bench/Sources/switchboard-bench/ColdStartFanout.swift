import ArgumentParser
import FanoutService
import Foundation
import NATSClient
import RedisClient
import RoutingCore
import RoutingWorkloads
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Starts the real `fanout` owning every partition, times process start → `/readyz` 200,
/// reads its stats over `routing.inspect.stats` and its peak RSS, and always stops it.
struct ColdStartFanout {
    struct Run {
        var label: String
        var seconds: Double
        var fanoutColdStartSeconds: Double?
        var peakRSSBytes: Int
        /// CPU seconds (user + system) from the fan-out's start to ready.
        var fanoutCPUSeconds, natsCPUSeconds: Double
        var stats: Inspection.Stats
        var snapshotsLoaded: Set<Int>
        var snapshotsNotUsed: Int
        var logTail: String

        var summary: String {
            String(format: "%@: ready in %.2f s (fan-out says %@ s; CPU to ready: fan-out %.1f s, nats-server %.1f s), peak RSS %.0f MB, %d memberships, %d channels, %d online users on %d instances, table %.1f MB = %.2f bytes/membership (+%.1f MB user ids), snapshots loaded for %d partitions%@",
                   label, seconds, fanoutColdStartSeconds.map { String(format: "%.2f", $0) } ?? "?", fanoutCPUSeconds, natsCPUSeconds, Double(peakRSSBytes) / 1_048_576,
                   stats.memberships, stats.channels, stats.onlineUsers, stats.instances, Double(stats.tableBytes) / 1_048_576,
                   stats.bytesPerMembership, Double(stats.userIdBytes) / 1_048_576, snapshotsLoaded.count,
                   snapshotsNotUsed > 0 ? ", \(snapshotsNotUsed) NOT used" : "")
        }

        func result(path: String) -> ColdStartResult.Path {
            ColdStartResult.Path(
                path: path, secondsToReady: seconds, fanoutColdStartSeconds: fanoutColdStartSeconds, peakRSSBytes: peakRSSBytes,
                fanoutCPUSeconds: fanoutCPUSeconds, natsCPUSeconds: natsCPUSeconds,
                tableBytes: stats.tableBytes, presenceBytes: stats.presenceBytes ?? 0, userIdBytes: stats.userIdBytes, bytesPerMembership: stats.bytesPerMembership,
                membershipTableBytesPerMembership: Double(stats.tableBytes - (stats.presenceBytes ?? 0)) / Double(max(1, stats.memberships)),
                memberships: stats.memberships, channels: stats.channels, users: stats.users, onlineUsers: stats.onlineUsers,
                instances: stats.instances, membershipSequence: stats.membershipSequence, snapshotsLoaded: snapshotsLoaded.count
            )
        }
    }

    let env: PipelineEnvironment
    let executable: String
    let streamsDir: String
    let readyTimeout: Duration

    /// Runs `fanout` with `arguments` added; `whileReady` runs after the measurements, before
    /// the stop. Throws if it does not become ready in time or its memberships differ.
    func run(label: String, arguments: [String], expectedMemberships: Int, whileReady: (ServerProcess) throws -> Void = { _ in }) throws -> Run {
        let natsCPUBefore = Machine.cpuSeconds(pid: env.nats.pid)
        let (process, _, ready) = try ServerProcess.startService(
            name: "fanout (\(label))", executable: executable, logURL: env.directory.appendingPathComponent("fanout-\(label).log"),
            readyTimeout: readyTimeout
        ) { httpPort in
            [
                "--nats-url", env.natsURL, "--redis-url", env.redisURL, "--partition-count", "\(env.partitionCount)",
                "--partitions", "0-\(env.partitionCount - 1)", "--replica-id", "bench-cold-start",
                "--http", "127.0.0.1:\(httpPort)", "--streams-dir", streamsDir,
            ] + arguments
        }
        defer { process.stop(grace: .seconds(20)) }
        let fanoutCPU = Machine.cpuSeconds(pid: process.pid)
        let natsCPU = Machine.cpuSeconds(pid: env.nats.pid) - natsCPUBefore
        let stats = try self.stats(label: label)
        guard stats.memberships == expectedMemberships else {
            throw PipelineError.setup("fanout (\(label)) holds \(stats.memberships) memberships, the dataset has \(expectedMemberships)")
        }
        try whileReady(process)
        let peak = Machine.peakResidentBytes(pid: process.pid)
        let log = (try? String(contentsOf: process.logURL, encoding: .utf8)) ?? ""
        var loaded = Set<Int>()
        var notUsed = 0
        var coldStart: Double?
        for line in log.split(separator: "\n") {
            if line.contains("snapshot loaded"), let partition = Self.value(of: "partition", in: line).flatMap({ Int($0) }) { loaded.insert(partition) }
            if line.contains("snapshot not used") { notUsed += 1 }
            if line.contains("fan-out ready") { coldStart = Self.value(of: "cold_start_s", in: line).flatMap { Double($0) } }
        }
        return Run(label: label, seconds: ready.seconds, fanoutColdStartSeconds: coldStart, peakRSSBytes: peak,
                   fanoutCPUSeconds: fanoutCPU, natsCPUSeconds: natsCPU, stats: stats,
                   snapshotsLoaded: loaded, snapshotsNotUsed: notUsed, logTail: process.logTail())
    }

    /// `routing.inspect.stats` (a few attempts within 30 s).
    private func stats(label: String) throws -> Inspection.Stats {
        let deadline = ContinuousClock.now + .seconds(30)
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                let reply = try env.publisher.request(Inspection.statsSubject, payload: [], timeout: .seconds(10))
                return try JSONDecoder().decode(Inspection.Stats.self, from: Data(reply.payload))
            } catch {
                lastError = error
                usleep(200_000)
            }
        }
        throw PipelineError.timeout("fanout (\(label)) did not answer \(Inspection.statsSubject): \(lastError.map { "\($0)" } ?? "no reply")")
    }

    /// The value of `key=value` (or `key="value"`) in a log line.
    static func value(of key: String, in line: Substring) -> String? {
        guard let range = line.range(of: key + "=") else { return nil }
        let rest = line[range.upperBound...].drop { $0 == "\"" }
        return String(rest.prefix { !$0.isWhitespace && $0 != "\"" && $0 != "," && $0 != "]" })
    }
}
