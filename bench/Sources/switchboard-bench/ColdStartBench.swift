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

    static let targets = (snapshotSeconds: 3.0, replaySeconds: 60.0, bytesPerMembership: 2.0, imageBytesPerMembership: 2.5)

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
        let header = RunHeader.begin("cold-start")
        // The nats-server the fixtures run (SWITCHBOARD_NATS_SERVER), not the one on PATH.
        let servers = [NATSServerBinary.path, "redis-server"].map(Self.version).joined(separator: ", ")
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
        _ = try ServerProcess.resolve(fanoutExecutable)
        let streamsPath = URL(fileURLWithPath: streamsDir).standardizedFileURL.path

        let storeURL = store.map { URL(fileURLWithPath: $0).standardizedFileURL }
        let env = try PipelineEnvironment(partitionCount: partitionCount, keepLogs: keepLogs, jetStreamStore: storeURL)
        defer { env.stop() }
        print("servers: nats-server \(env.natsURL), redis-server \(env.redisURL), logs in \(env.directory.path)")
        for (name, result) in try definitions.apply(subjectTransforms: env.jetStream.serverSupportsStreamSubjectTransforms(), { try env.jetStream.applyStream(configJSON: $0) }) { print("stream \(name): \(result)") }
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
        // Images plus the user dictionaries they name (each counted once, as far as written).
        var dictionaryBytes: [String: Int] = [:]
        for case let reference? in manifests.map(\.dictionary) {
            let key = "\(reference.replica).\(reference.slot).\(reference.lineage)"
            dictionaryBytes[key] = max(dictionaryBytes[key] ?? 0, reference.bytes)
        }
        let imageBytes = manifests.reduce(0) { $0 + $1.bytes }
        let snapshotBytes = imageBytes + dictionaryBytes.values.reduce(0, +)
        let snapshotLine = String(format: "%d partitions, %.1f MB = %.1f MB of images + %.1f MB in %d user dictionar%@ (%.2f bytes/membership, target ≤ %.1f: %@; %d image chunks), all manifests %.1f s after ready",
                                  manifests.count, Double(snapshotBytes) / 1e6, Double(imageBytes) / 1e6, Double(snapshotBytes - imageBytes) / 1e6,
                                  dictionaryBytes.count, dictionaryBytes.count == 1 ? "y" : "ies",
                                  Double(snapshotBytes) / Double(dataset.membershipCount), Self.targets.imageBytesPerMembership,
                                  Double(snapshotBytes) / Double(dataset.membershipCount) <= Self.targets.imageBytesPerMembership ? "met" : "MISSED",
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
            date: ISO8601DateFormatter().string(from: date), machine: Machine.description, servers: servers, loadAverage: header.loadAtStart, command: header.command,
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
        guard let path = try? ServerProcess.resolve(name) else { return "\(name) ?" }
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
}
