import Foundation
import RoutingWorkloads

/// The cold-start bench's Markdown block (appended to bench/RESULTS.md) and its JSON result.
extension ColdStartBench {
    static func report(_ result: ColdStartResult, datasetLine: String, loadLine: String, snapshotLine: String) -> String {
        var lines: [String] = []
        lines.append("### \(result.date) — preset `\(result.preset)`")
        lines.append("")
        lines.append("- machine: \(result.machine); load average at start \(result.loadAverage)")
        lines.append("- command: `\(result.command)`; \(result.servers)")
        lines.append("- dataset: \(datasetLine)")
        lines.append("- load: \(loadLine)")
        lines.append("- snapshots: \(snapshotLine)")
        lines.append("- one `fanout` owning every partition; seconds from process start to `/readyz` 200 (polled every 20 ms; the fan-out's own `cold_start_s` in brackets); peak RSS = VmHWM just before stopping; bytes/membership: the membership table (member sets and channel index), then with the presence table of the online users added, then the interned user-id strings (given apart)")
        lines.append("")
        lines.append("| path | seconds to ready | CPU s to ready: fan-out / nats-server | peak RSS MB | bytes/membership: membership table (+ presence) (+ user ids) | memberships |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for path in result.paths {
            let own = path.fanoutColdStartSeconds.map { String(format: " (%.2f)", $0) } ?? ""
            lines.append(String(format: "| %@ | %.2f%@ | %.1f / %.1f | %.0f | %.2f (%.2f) (+%.2f) | %@ |", path.path, path.secondsToReady, own,
                                path.fanoutCPUSeconds, path.natsCPUSeconds, Double(path.peakRSSBytes) / 1_048_576,
                                path.membershipTableBytesPerMembership, path.bytesPerMembership,
                                Double(path.userIdBytes) / Double(max(1, path.memberships)), PipelineBench.thousands(Double(path.memberships))))
        }
        lines.append("")
        if let replay = result.paths.first(where: { $0.path == "full replay" }), let snapshot = result.paths.first(where: { $0.path == "from snapshot" }) {
            func verdict(_ met: Bool) -> String { met ? "met" : "NOT met" }
            let scale = result.preset == "large" ? "" : " (targets are for the large preset; shown for reference)"
            lines.append("- targets\(scale): from snapshot ≤ \(Int(result.targets.snapshotSeconds)) s: **\(verdict(snapshot.secondsToReady <= result.targets.snapshotSeconds))** (\(String(format: "%.2f", snapshot.secondsToReady)) s); full replay ≤ \(Int(result.targets.replaySeconds)) s: **\(verdict(replay.secondsToReady <= result.targets.replaySeconds))** (\(String(format: "%.2f", replay.secondsToReady)) s); ≤ \(Int(result.targets.bytesPerMembership)) bytes/membership: **\(verdict(snapshot.membershipTableBytesPerMembership <= result.targets.bytesPerMembership && replay.membershipTableBytesPerMembership <= result.targets.bytesPerMembership))**" + " (membership table; with the presence of \(result.dataset.online) online users \(String(format: "%.2f / %.2f", replay.bytesPerMembership, snapshot.bytesPerMembership)))")
            lines.append("- memberships equal the dataset's \(result.dataset.memberships): full replay \(replay.memberships == result.dataset.memberships ? "yes" : "NO"), from snapshot \(snapshot.memberships == result.dataset.memberships ? "yes" : "NO"); \"snapshot loaded\" logged for \(snapshot.snapshotsLoaded) of \(result.dataset.partitionsWithMemberships) partitions")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Adds `block` at the end of the section `heading` of `path` (the section is created at the
    /// end of the file if absent). Only inserts; never changes existing text.
    static func appendResults(_ block: String, heading: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let existing = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        let headingRange = existing.hasPrefix(heading + "\n") ? existing.range(of: heading + "\n") : existing.range(of: "\n" + heading + "\n")
        var text = existing
        if let headingRange {
            if let next = existing.range(of: "\n## ", range: headingRange.upperBound..<existing.endIndex) {
                text.insert(contentsOf: "\n" + block, at: next.lowerBound)
            } else {
                text += (existing.hasSuffix("\n") ? "\n" : "\n\n") + block
            }
        } else {
            let separator = existing.isEmpty ? "" : (existing.hasSuffix("\n\n") ? "" : (existing.hasSuffix("\n") ? "\n" : "\n\n"))
            text += separator + heading + "\n\n" + block
        }
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
}

struct ColdStartResult: Encodable {
    struct DatasetInfo: Encodable {
        var users, channels, memberships, heavyUsers, heavyUserChannels, online, instances, largestChannel, partitionCount, partitionsWithMemberships: Int
        var seed: UInt64

        init(_ dataset: Dataset, partitionCount: Int, partitionsWithMemberships: Int) {
            users = dataset.shape.users
            channels = dataset.shape.channels
            memberships = dataset.membershipCount
            heavyUsers = dataset.shape.heavyUsers
            heavyUserChannels = dataset.shape.heavyUserChannels
            online = min(dataset.shape.online, dataset.shape.users)
            instances = dataset.shape.instances
            largestChannel = dataset.channelSizes.first ?? 0
            self.partitionCount = partitionCount
            self.partitionsWithMemberships = partitionsWithMemberships
            seed = dataset.shape.seed
        }
    }

    struct Load: Encodable {
        var memberships: Int
        var membershipSeconds: Double
        var maxInFlight, streamBytes, onlineUsers: Int
        var totalSeconds: Double
    }

    struct Snapshots: Encodable {
        var partitions, bytes, chunks: Int
        var secondsAfterReady: Double
    }

    struct Path: Encodable {
        var path: String
        var secondsToReady: Double
        var fanoutColdStartSeconds: Double?
        var peakRSSBytes: Int
        var fanoutCPUSeconds, natsCPUSeconds: Double
        var tableBytes: Int
        /// Of `tableBytes`, the presence table (per online user, not per membership).
        var presenceBytes, userIdBytes: Int
        /// All of `tableBytes` per membership.
        var bytesPerMembership: Double
        /// The membership table alone (`tableBytes - presenceBytes`) per membership.
        var membershipTableBytesPerMembership: Double
        var memberships, channels, users, onlineUsers, instances: Int
        var membershipSequence: UInt64
        var snapshotsLoaded: Int
    }

    struct Targets: Encodable {
        var snapshotSeconds, replaySeconds, bytesPerMembership: Double
    }

    var date, machine, servers, loadAverage, command, preset: String
    var dataset: DatasetInfo
    var load: Load
    var snapshots: Snapshots
    var paths: [Path]
    var targets: Targets
}
