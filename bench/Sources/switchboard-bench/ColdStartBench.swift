import ArgumentParser
import FanoutService
import Foundation
import NATSClient
import RedisClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `switchboard-bench cold-start`: how long the real `fanout` takes from process start to
/// `/readyz` 200 with a generated dataset (`Dataset`), by full `CHAT_MEMBERSHIP` replay and from
/// snapshots, with its peak RSS and table size. Starts its own nats-server -js and redis-server
/// (`PipelineEnvironment`), loads the memberships (JetStream async publish) and the presence (as
/// notifiers write it, heartbeated every 2 s), then:
/// 1. full replay: `fanout` with no snapshot in the stream;
/// 2. a `fanout` run with `--snapshot-every-changes 1` until every partition with memberships
///    has a manifest in `ROUTING_SNAPSHOTS`;
/// 3. from snapshot: `fanout` again; its log must say "snapshot loaded" for those partitions.
struct ColdStartBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cold-start",
        abstract: "Fan-out cold start (process start → /readyz) by full membership replay and from snapshots (real servers)."
    )

    enum Preset: String, ExpressibleByArgument, CaseIterable, Sendable {
        case small, large

        var shape: Dataset.Shape {
            switch self {
            case .small: Dataset.Shape(users: 10_000, channels: 1_000, memberships: 100_000, online: 1_000, instances: 4)
            case .large: Dataset.Shape(users: 1_000_000, channels: 100_000, memberships: 20_000_000, online: 100_000, instances: 16)
            }
        }
    }

    @Option(help: "Dataset preset: small (CI smoke: 10 k users, 100 k memberships, 1 k channels, 1 k online on 4 instances) or large (1 M users, 100 k channels, 20 M memberships, 100 k online on 16 instances).")
    var preset: Preset = .small
    @Option(help: "Override the preset's user count.") var users: Int?
    @Option(help: "Override the preset's channel count.") var channels: Int?
    @Option(help: "Override the preset's membership target.") var memberships: Int?
    @Option(help: "Override the preset's online user count.") var online: Int?
    @Option(help: "Override the preset's notifier instance count.") var instances: Int?
    @Option(help: "Heavy users (in up to --heavy-user-channels channels each).") var heavyUsers = 10
    @Option(help: "Channels each heavy user is in (largest first).") var heavyUserChannels = 100_000
    @Option(help: "Dataset seed.") var seed: UInt64 = 42
    @Option(help: "JetStream async publishes in flight at most while loading.") var maxInFlight = 8_192
    @Option(help: "Give up loading when the load (measured or projected) exceeds this many seconds.") var maxLoadSeconds = 1_800.0
    @Option(help: "Seconds a fan-out start may take before the bench gives up.") var readyTimeout = 900.0
    @Option(help: "Seconds to wait for every partition's snapshot manifest.") var snapshotTimeout = 600.0
    @Option(help: "Folder with the stream definitions.") var streamsDir = "streams"
    @Option(help: "The fanout executable (default: the root package's build of the same configuration).") var fanoutPath: String?
    @Option(help: "JSON result file (default bench/out/cold-start-<preset>.json).") var jsonOut: String?
    @Option(help: "Markdown file the result table is appended to (under '## Cold start').") var results = "bench/RESULTS.md"
    @Flag(help: "Do not append to the results file.") var noResults = false
    @Flag(help: "Keep the temp directory with the server and fan-out logs.") var keepLogs = false
    @Option(help: "JetStream store folder kept between runs: memberships are loaded only when it does not hold this dataset yet (the large load takes over 10 minutes).") var store: String?

    static let targets = (snapshotSeconds: 6.0, replaySeconds: 60.0, bytesPerMembership: 2.0)

    var shape: Dataset.Shape {
        var shape = preset.shape
        if let users { shape.users = users }
        if let channels { shape.channels = channels }
        if let memberships { shape.memberships = memberships }
        if let online { shape.online = online }
        if let instances { shape.instances = instances }
        shape.heavyUsers = heavyUsers
        shape.heavyUserChannels = heavyUserChannels
        shape.seed = seed
        return shape
    }

    func validate() throws {
        let shape = shape
        guard shape.users > shape.heavyUsers, shape.channels > 0, shape.memberships > 0, shape.instances > 0, shape.online >= 0 else {
            throw ValidationError("users (more than --heavy-users), channels, memberships and instances must be positive")
        }
        guard heavyUsers >= 0, heavyUserChannels >= 0, maxInFlight > 0, maxLoadSeconds > 0, readyTimeout > 0, snapshotTimeout > 0 else {
            throw ValidationError("--heavy-users, --heavy-user-channels must be ≥ 0; --max-in-flight and the timeouts positive")
        }
    }

    func run() throws {
        PipelineChildren.installSignalHandlers()
        let command = (["switchboard-bench", "cold-start"] + CommandLine.arguments.dropFirst(2)).joined(separator: " ")
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
        let servers = ["nats-server", "redis-server"].map(Self.version).joined(separator: ", ")
        print("machine: \(Machine.description)")
        print("load average at start: \(load)")
        print("command: \(command)")
        print("servers: \(servers)")

        let definitions = try StreamDefinitions(directory: streamsDir)
        let partitionCount = definitions.partitionCount
        let dataset = Dataset(shape)
        let channelIDs = (0..<dataset.shape.channels).map(Dataset.channelID)
        let channelPartitions = channelIDs.map { Partitioner.partition(of: $0, count: partitionCount) }
        let usedPartitions = Set(zip(channelPartitions, dataset.channelSizes).filter { $0.1 > 0 }.map(\.0)).sorted()
        let datasetLine = "\(dataset.shape.users) users, \(dataset.shape.channels) channels (Zipf(\(dataset.shape.zipfExponent)), largest \(dataset.channelSizes.first ?? 0) members), \(dataset.membershipCount) memberships (\(dataset.shape.heavyUsers) heavy users in \(min(dataset.shape.heavyUserChannels, dataset.shape.channels)) channels each), \(min(dataset.shape.online, dataset.shape.users)) online on \(dataset.shape.instances) instances, seed \(dataset.shape.seed); \(partitionCount) partitions, \(usedPartitions.count) with memberships"
        print("dataset (\(preset.rawValue)): \(datasetLine)")

        let fanoutExecutable = fanoutPath ?? ServiceExecutables.path("fanout")
        _ = try PipelineProcess.resolve(fanoutExecutable)
        let streamsPath = URL(fileURLWithPath: streamsDir).standardizedFileURL.path

        let storeURL = store.map { URL(fileURLWithPath: $0).standardizedFileURL }
        let env = try PipelineEnvironment(partitionCount: partitionCount, keepLogs: keepLogs, jetStreamStore: storeURL)
        defer { env.stop() }
        print("servers: nats-server \(env.natsURL), redis-server \(env.redisURL), logs in \(env.directory.path)")
        for (name, result) in try definitions.apply({ try env.jetStream.applyStream(configJSON: $0) }) { print("stream \(name): \(result)") }
        // A kept store may hold an earlier run's snapshots; the replay path must start without.
        try env.jetStream.purge(stream: StreamNames.snapshots)

        // Load: memberships into CHAT_MEMBERSHIP, presence into Redis (heartbeated from here on).
        let loadStarted = ContinuousClock.now
        let loader = ColdStartLoader(env: env, dataset: dataset, channelIDs: channelIDs, channelPartitions: channelPartitions)
        let earlierLoad = try storeURL.flatMap { try StoredDataset.matching(datasetLine, memberships: dataset.membershipCount, in: $0, jetStream: env.jetStream) }
        var membershipSeconds = earlierLoad?.membershipSeconds ?? 0
        if let earlierLoad, let storeURL {
            print("memberships: reusing the \(dataset.membershipCount) loaded into \(storeURL.path) on \(earlierLoad.date)")
        } else {
            try env.jetStream.purge(stream: StreamNames.membership)
            try loader.loadMemberships(maxInFlight: maxInFlight, maxSeconds: maxLoadSeconds)
            membershipSeconds = (ContinuousClock.now - loadStarted).seconds
        }
        let stored = try env.jetStream.streamState(StreamNames.membership)
        guard stored.messages == UInt64(dataset.membershipCount) else {
            throw PipelineError.setup("\(StreamNames.membership) holds \(stored.messages) messages, the dataset has \(dataset.membershipCount) memberships")
        }
        if let storeURL, earlierLoad == nil {
            try StoredDataset(datasetLine: datasetLine, memberships: dataset.membershipCount, membershipSeconds: membershipSeconds, maxInFlight: maxInFlight,
                              date: ISO8601DateFormatter().string(from: Date())).write(to: storeURL)
        }
        let presenceStarted = ContinuousClock.now
        let heartbeat = try loader.loadPresence()
        defer { heartbeat.stop() }
        let presenceSeconds = (ContinuousClock.now - presenceStarted).seconds
        let loadSeconds = membershipSeconds + presenceSeconds
        let loadInFlight = earlierLoad?.maxInFlight ?? maxInFlight
        let loadLine = String(format: "%d memberships in %.1f s (%.0f/s, %d in flight at most; stream %.1f MB)%@, %d online users in %.1f s",
                              dataset.membershipCount, membershipSeconds, Double(dataset.membershipCount) / max(membershipSeconds, 1e-9), loadInFlight,
                              Double(stored.bytes) / 1e6, earlierLoad.map { " (loaded on \($0.date) into the kept store)" } ?? "",
                              loader.onlineCount, presenceSeconds)
        print("loaded: \(loadLine)")

        let runner = ColdStartFanout(env: env, executable: fanoutExecutable, streamsDir: streamsPath, readyTimeout: .seconds(readyTimeout))
        let noSnapshots = ["--snapshot-every-changes", "\(Int32.max)", "--snapshot-interval-seconds", "\(Int32.max)"]

        print("\n# path 1: full replay")
        let replay = try runner.run(label: "replay", arguments: noSnapshots, expectedMemberships: dataset.membershipCount)
        print(replay.summary)

        print("\n# writing snapshots")
        let store = SnapshotStore(jetStream: env.jetStream)
        var manifests: [SnapshotStore.Manifest] = []
        var snapshotWait = 0.0
        _ = try runner.run(label: "snapshot-writer", arguments: ["--snapshot-every-changes", "1", "--snapshot-interval-seconds", "1"], expectedMemberships: dataset.membershipCount) { process in
            let started = ContinuousClock.now
            let deadline = started + .seconds(snapshotTimeout)
            var found: [Int: SnapshotStore.Manifest] = [:]
            while found.count < usedPartitions.count {
                guard ContinuousClock.now < deadline else {
                    throw PipelineError.timeout("snapshots of partitions \(usedPartitions.filter { found[$0] == nil }) not written within \(snapshotTimeout) s; log:\n\(process.logTail())")
                }
                guard process.isRunning else { throw PipelineError.setup("fanout exited while writing snapshots; log:\n\(process.logTail())") }
                for partition in usedPartitions where found[partition] == nil {
                    if let manifest = try store.readManifest(partition: partition) { found[partition] = manifest }
                }
                if found.count < usedPartitions.count { usleep(200_000) }
            }
            snapshotWait = (ContinuousClock.now - started).seconds
            manifests = usedPartitions.compactMap { found[$0] }
        }
        let snapshotBytes = manifests.reduce(0) { $0 + $1.bytes }
        let snapshotLine = String(format: "%d partitions, %.1f MB of images (%.2f bytes/membership, %d chunks), all manifests %.1f s after ready",
                                  manifests.count, Double(snapshotBytes) / 1e6, Double(snapshotBytes) / Double(dataset.membershipCount),
                                  manifests.reduce(0) { $0 + $1.chunks }, snapshotWait)
        print("snapshots: \(snapshotLine)")

        print("\n# path 2: from snapshot")
        let fromSnapshot = try runner.run(label: "snapshot", arguments: noSnapshots, expectedMemberships: dataset.membershipCount)
        print(fromSnapshot.summary)
        let missing = usedPartitions.filter { !fromSnapshot.snapshotsLoaded.contains($0) }
        guard missing.isEmpty else {
            throw PipelineError.setup("fanout did not log \"snapshot loaded\" for partitions \(missing); log:\n\(fromSnapshot.logTail)")
        }

        let date = Date()
        let result = ColdStartResult(
            date: ISO8601DateFormatter().string(from: date), machine: Machine.description, servers: servers, loadAverage: load, command: command,
            preset: preset.rawValue, dataset: .init(dataset, partitionCount: partitionCount, partitionsWithMemberships: usedPartitions.count),
            load: .init(memberships: dataset.membershipCount, membershipSeconds: membershipSeconds, maxInFlight: loadInFlight,
                        streamBytes: Int(stored.bytes), onlineUsers: loader.onlineCount, totalSeconds: loadSeconds),
            snapshots: .init(partitions: manifests.count, bytes: snapshotBytes, chunks: manifests.reduce(0) { $0 + $1.chunks }, secondsAfterReady: snapshotWait),
            paths: [replay.result(path: "full replay"), fromSnapshot.result(path: "from snapshot")],
            targets: .init(snapshotSeconds: Self.targets.snapshotSeconds, replaySeconds: Self.targets.replaySeconds, bytesPerMembership: Self.targets.bytesPerMembership)
        )
        let report = Self.report(result, datasetLine: datasetLine, loadLine: loadLine, snapshotLine: snapshotLine)
        print("\n" + report)

        let jsonPath = jsonOut ?? "bench/out/cold-start-\(preset.rawValue).json"
        let jsonURL = URL(fileURLWithPath: jsonPath)
        try FileManager.default.createDirectory(at: jsonURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(result).write(to: jsonURL)
        print("wrote \(jsonPath)")
        if !noResults {
            try Self.appendResults(report, heading: "## Cold start", to: results)
            print("appended to \(results)")
        }
    }

    /// `<name> --version` (first line), or "<name> ?".
    static func version(of name: String) -> String {
        guard let path = try? PipelineProcess.resolve(name) else { return "\(name) ?" }
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--version"]
        process.standardOutput = pipe
        process.standardError = pipe
        guard (try? process.run()) != nil else { return "\(name) ?" }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let line = String(decoding: output, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "?"
        return "\(path): \(line)"
    }

    // MARK: report

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

/// What `--store` remembers of the memberships it holds, so a later run with the same dataset
/// skips the load (and reports the original load's numbers).
struct StoredDataset: Codable {
    static let fileName = "switchboard-dataset.json"

    var datasetLine: String
    var memberships: Int
    var membershipSeconds: Double
    var maxInFlight: Int
    var date: String

    /// The record in `store` when it describes `datasetLine` and the stream still holds it all.
    static func matching(_ datasetLine: String, memberships: Int, in store: URL, jetStream: JetStream) throws -> StoredDataset? {
        guard let data = try? Data(contentsOf: store.appendingPathComponent(fileName)),
              let record = try? JSONDecoder().decode(StoredDataset.self, from: data),
              record.datasetLine == datasetLine, record.memberships == memberships else { return nil }
        return try jetStream.streamState(StreamNames.membership).messages == UInt64(memberships) ? record : nil
    }

    func write(to store: URL) throws {
        try JSONEncoder().encode(self).write(to: store.appendingPathComponent(Self.fileName))
    }
}

// MARK: - result file

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
        var maxInFlight: Int
        var streamBytes: Int
        var onlineUsers: Int
        var totalSeconds: Double
    }

    struct Snapshots: Encodable {
        var partitions: Int
        var bytes: Int
        var chunks: Int
        var secondsAfterReady: Double
    }

    struct Path: Encodable {
        var path: String
        var secondsToReady: Double
        var fanoutColdStartSeconds: Double?
        var peakRSSBytes: Int
        var fanoutCPUSeconds: Double
        var natsCPUSeconds: Double
        var tableBytes: Int
        /// Of `tableBytes`, the presence table (per online user, not per membership).
        var presenceBytes: Int
        var userIdBytes: Int
        /// All of `tableBytes` per membership.
        var bytesPerMembership: Double
        /// The membership table alone (`tableBytes - presenceBytes`) per membership.
        var membershipTableBytesPerMembership: Double
        var memberships: Int
        var channels: Int
        var users: Int
        var onlineUsers: Int
        var instances: Int
        var membershipSequence: UInt64
        var snapshotsLoaded: Int
    }

    struct Targets: Encodable {
        var snapshotSeconds: Double
        var replaySeconds: Double
        var bytesPerMembership: Double
    }

    var date: String
    var machine: String
    var servers: String
    var loadAverage: String
    var command: String
    var preset: String
    var dataset: DatasetInfo
    var load: Load
    var snapshots: Snapshots
    var paths: [Path]
    var targets: Targets
}

// MARK: - loading

/// Writes the dataset where the fan-out reads it: memberships into `CHAT_MEMBERSHIP` as upstream
/// publishes them, presence into Redis as notifiers write it.
struct ColdStartLoader {
    let env: PipelineEnvironment
    let dataset: Dataset
    let channelIDs: [String]
    let channelPartitions: [Int]

    var onlineCount: Int { min(dataset.shape.online, dataset.shape.users) }

    /// JetStream async publish of every membership (at most `maxInFlight` unacked), with a
    /// progress line on stderr; throws when the load takes (or is projected to take) longer
    /// than `maxSeconds`.
    func loadMemberships(maxInFlight: Int, maxSeconds: Double) throws {
        let jetStream = try env.publisher.jetStream(timeout: .seconds(30), maxPendingAsyncPublishes: maxInFlight)
        let prefixes = zip(channelIDs, channelPartitions).map { "chat.membership.\($1).\($0)." }
        let total = dataset.membershipCount
        let progress = ColdStartProgress(label: "memberships", total: total)
        var published = 0
        try dataset.forEachMembership { channel, user in
            let userID = Dataset.userID(user)
            let change = MembershipChange(channelID: channelIDs[channel], userID: userID, state: .joined, version: 1)
            try jetStream.publishAsync(prefixes[channel] + userID, payload: change.encoded())
            published += 1
            if published % 1_000_000 == 0 {
                // Surfaces failed publishes early instead of after millions more.
                try jetStream.publishAsyncComplete(timeout: .seconds(120))
            }
            if published & 0x3FFF == 0 {
                progress.update(published)
                let elapsed = progress.elapsed
                if elapsed > maxSeconds || (elapsed > 30 && elapsed * Double(total) / Double(published) > maxSeconds * 1.1) {
                    throw PipelineError.timeout(String(format: "loading %d memberships would take about %.0f s (%.0f/s), more than --max-load-seconds %.0f",
                                                       total, elapsed * Double(total) / Double(published), Double(published) / elapsed, maxSeconds))
                }
            }
        }
        try jetStream.publishAsyncComplete(timeout: .seconds(300))
        progress.finish(published)
    }

    /// Per instance: `SET epoch:<i> 1`, `HSET presence:<i> <user> <slot>` (pipelined), then
    /// `ZADD instances <now ms> <i>`; returns the heartbeat that keeps the instances alive.
    func loadPresence() throws -> ColdStartHeartbeat {
        let instanceIDs = (0..<dataset.shape.instances).map(Dataset.instanceID)
        var perInstance = [[(String, String)]](repeating: [], count: instanceIDs.count)
        dataset.forEachOnlineUser { user, instance, slot in perInstance[instance].append((Dataset.userID(user), "\(slot)")) }
        let redis = try RedisConnection(url: env.redisURL, timeout: .seconds(10))
        defer { redis.close() }
        let progress = ColdStartProgress(label: "presence", total: onlineCount)
        var written = 0
        for (index, instance) in instanceIDs.enumerated() {
            var commands: [[String]] = [["SET", PresenceKeys.epoch(instance: instance), "1"]]
            var start = 0
            while start < perInstance[index].count {
                let end = min(start + 500, perInstance[index].count)
                var hset = ["HSET", PresenceKeys.users(instance: instance)]
                for (user, slot) in perInstance[index][start..<end] { hset += [user, slot] }
                commands.append(hset)
                start = end
                if commands.count >= 64 || start == perInstance[index].count {
                    try Self.checked(redis.pipeline(commands))
                    commands = []
                }
            }
            try Self.checked(redis.pipeline(commands + [["ZADD", PresenceKeys.instances, "\(Self.nowMs())", instance]]))
            written += perInstance[index].count
            progress.update(written)
        }
        progress.finish(written)
        return try ColdStartHeartbeat(redisURL: env.redisURL, instances: instanceIDs)
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    private static func checked(_ replies: [RedisReply]) throws {
        for reply in replies {
            if case .error(let text) = reply { throw PipelineError.setup("Redis: \(text)") }
        }
    }
}

/// `ZADD instances <now ms> <instance>` for every instance every 2 s, as notifiers heartbeat,
/// on its own thread and connection until `stop()` (bounded).
final class ColdStartHeartbeat: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    private var stopped = false

    init(redisURL: String, instances: [String]) throws {
        let redis = try RedisConnection(url: redisURL, timeout: .seconds(2))
        let thread = Thread { [self] in
            var nextBeat = ContinuousClock.now + .seconds(2)
            while !stopFlag.load(ordering: .relaxed) {
                if ContinuousClock.now >= nextBeat {
                    let now = "\(ColdStartLoader.nowMs())"
                    _ = try? redis.pipeline(instances.map { ["ZADD", PresenceKeys.instances, now, $0] })
                    nextBeat = ContinuousClock.now + .seconds(2)
                }
                usleep(100_000)
            }
            redis.close()
            done.store(true, ordering: .relaxed)
        }
        thread.name = "bench-heartbeat"
        thread.start()
    }

    func stop() {
        if stopped { return }
        stopped = true
        stopFlag.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(5)
        while !done.load(ordering: .relaxed) && ContinuousClock.now < deadline { usleep(20_000) }
    }

    deinit { stop() }
}

/// A progress line on stderr: percent, count, rate. Redrawn in place on a terminal, else a
/// line every 5 s.
final class ColdStartProgress {
    let label: String
    let total: Int
    private let started = ContinuousClock.now
    private var lastPrint = ContinuousClock.now
    private let terminal = isatty(2) != 0

    init(label: String, total: Int) {
        self.label = label
        self.total = total
    }

    var elapsed: Double { (ContinuousClock.now - started).seconds }

    func update(_ done: Int) {
        let now = ContinuousClock.now
        guard now - lastPrint >= (terminal ? .milliseconds(500) : .seconds(5)) else { return }
        lastPrint = now
        write(done, end: terminal ? "\r" : "\n")
    }

    func finish(_ done: Int) { write(done, end: "\n") }

    private func write(_ done: Int, end: String) {
        let seconds = max(elapsed, 1e-9)
        let rate = Double(done) / seconds
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "%@: %5.1f %% (%d / %d), %.0f/s, %.0f s elapsed, eta %.0f s   %@",
                          label, 100 * Double(done) / Double(max(1, total)), done, total, rate, seconds, eta, end)
        FileHandle.standardError.write(Data(line.utf8))
    }
}

// MARK: - fan-out runs

/// Starts the real `fanout` owning every partition, times process start → `/readyz` 200,
/// reads its stats over `routing.inspect.stats` and its peak RSS, and always stops it.
struct ColdStartFanout {
    struct Run {
        var label: String
        var seconds: Double
        var fanoutColdStartSeconds: Double?
        var peakRSSBytes: Int
        /// CPU seconds (user + system) from the fan-out's start to ready.
        var fanoutCPUSeconds: Double
        var natsCPUSeconds: Double
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
    func run(label: String, arguments: [String], expectedMemberships: Int, whileReady: (PipelineProcess) throws -> Void = { _ in }) throws -> Run {
        let httpPort = try PipelineNet.freePort()
        let natsCPUBefore = EndToEndProbes.cpuSeconds(pid: env.nats.pid)
        let started = ContinuousClock.now
        let process = try PipelineProcess(
            name: "fanout", executable: executable,
            arguments: [
                "--nats-url", env.natsURL, "--redis-url", env.redisURL, "--partition-count", "\(env.partitionCount)",
                "--partitions", "0-\(env.partitionCount - 1)", "--replica-id", "bench-cold-start",
                "--http", "127.0.0.1:\(httpPort)", "--streams-dir", streamsDir,
            ] + arguments,
            logURL: env.directory.appendingPathComponent("fanout-\(label).log")
        )
        defer { process.stop(grace: .seconds(20)) }
        let deadline = started + readyTimeout
        var ready: Duration?
        while ready == nil {
            guard process.isRunning else { throw PipelineError.setup("fanout (\(label)) exited during start-up; log:\n\(process.logTail())") }
            guard ContinuousClock.now < deadline else { throw PipelineError.timeout("fanout (\(label)) not ready within \(readyTimeout); log:\n\(process.logTail())") }
            if PipelineNet.httpStatus(port: httpPort, path: "/readyz") == 200 { ready = ContinuousClock.now - started } else { usleep(20_000) }
        }
        let fanoutCPU = EndToEndProbes.cpuSeconds(pid: process.pid)
        let natsCPU = EndToEndProbes.cpuSeconds(pid: env.nats.pid) - natsCPUBefore
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
        return Run(label: label, seconds: ready!.seconds, fanoutColdStartSeconds: coldStart, peakRSSBytes: peak,
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
