import Foundation
import Logging
import NATSClient
import RoutingCore
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardProto
import Synchronization

/// The fan-out replica: owns a set of partitions, warms the routing table, then turns every
/// chat event into one delivery per notifier instance with an online recipient.
///
/// Start-up order (readiness turns true only at the end):
/// 1. connect to NATS and apply `streams/` (idempotent);
/// 2. per owned partition, load the newest snapshot if one is complete and valid;
/// 3. replay `CHAT_MEMBERSHIP` from each partition's snapshot sequence until caught up;
/// 4. warm presence from Redis (subscribe, scan, apply the buffered deltas);
/// 5. start the event pipelines, typing relay, snapshot writer and inspection responder.
public final class FanoutService: Service, @unchecked Sendable {
    public let config: FanoutConfig
    private let logger: Logger
    private let metrics: FanoutMetrics
    let state: RoutingState
    private let readyFlag = Atomic<Bool>(false)
    private let started = ContinuousClock.now

    private var connection: NATSConnection?
    private var pipelines: [EventPipeline] = []
    private var membershipFeed: MembershipFeed?
    private var presence: PresenceFeed?
    private var typing: TypingRelay?
    private var inspection: InspectionResponder?
    private var snapshots: SnapshotWriter?

    public init(config: FanoutConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        metrics = FanoutMetrics(partitions: config.partitions.owned)
        state = RoutingState(partitions: config.partitions.owned, partitionCount: config.partitions.count)
    }

    /// True once the routing table is warm and events are being consumed (`/readyz`).
    public var isReady: Bool { readyFlag.load(ordering: .relaxed) }

    public func run() async throws {
        do {
            try await startUp()
        } catch {
            logger.critical("fan-out start-up failed", metadata: ["error": "\(error)"])
            await shutDown()
            throw error
        }
        try? await gracefulShutdown()
        await shutDown()
    }

    private func startUp() async throws {
        let connection = try await blocking { [config] in
            try NATSConnection(options: .init(url: config.natsURL, name: "fanout-\(config.replicaID)", connectTimeout: .seconds(5)))
        }
        self.connection = connection
        let jetStream = try connection.jetStream()
        let definitions = try StreamDefinitions(directory: config.streamsDirectory, replicas: config.streamReplicas)
        guard definitions.partitionCount == config.partitions.count else {
            throw FanoutError.invalidConfiguration("--partition-count \(config.partitions.count) differs from the deployment's \(definitions.partitionCount) (\(config.streamsDirectory)/\(StreamDefinitions.deploymentFile))")
        }
        for (name, result) in try await blocking({ try definitions.apply(jetStream.applyStream(configJSON:)) }) {
            logger.info("stream applied", metadata: ["stream": "\(name)", "result": "\(result)"])
        }

        let store = SnapshotStore(jetStream: jetStream)
        let startSequences = await blocking { [self] in loadSnapshots(store: store) }

        let replayStarted = ContinuousClock.now
        let starts = Dictionary(uniqueKeysWithValues: config.partitions.owned.map { ($0, startSequences[$0] ?? 0) })
        let membershipFeed = try MembershipFeed(startSequences: starts, jetStream: jetStream, state: state, metrics: metrics, logger: logger)
        self.membershipFeed = membershipFeed
        await membershipFeed.startAndCatchUp()
        logger.info("membership replayed", metadata: ["ms": "\((ContinuousClock.now - replayStarted).milliseconds)"])

        let presence = PresenceFeed(redisURL: config.redisURL, state: state, metrics: metrics, instanceTimeout: config.instanceTimeout, logger: logger)
        self.presence = presence
        try await presence.startAndWarm()

        pipelines = try config.partitions.owned.map { partition in
            try EventPipeline(partition: partition, connection: connection, jetStream: jetStream, state: state, metrics: metrics, config: config, logger: logger)
        }
        pipelines.forEach { $0.start() }

        let typing = TypingRelay(connection: connection, state: state, metrics: metrics, partitions: config.partitions.owned, partitionCount: config.partitions.count, window: config.typingWindow, logger: logger)
        try typing.start()
        self.typing = typing

        let pipelines = self.pipelines
        let inspection = InspectionResponder(
            connection: connection, state: state,
            replica: { [config, readyFlag = self] in
                Inspection.Replica(id: config.replicaID, partitions: config.partitions.owned, partitionCount: config.partitions.count, ready: readyFlag.isReady)
            },
            lag: { Dictionary(uniqueKeysWithValues: pipelines.map { ("\($0.partition)", $0.lag.load(ordering: .relaxed)) }) },
            logger: logger
        )
        try inspection.start()
        self.inspection = inspection

        let snapshots = SnapshotWriter(store: store, state: state, metrics: metrics, config: config, logger: logger)
        snapshots.start()
        self.snapshots = snapshots

        state.compact()
        let seconds = Double((ContinuousClock.now - started).nanoseconds) / 1e9
        metrics.coldStartSeconds.record(seconds)
        let stats = state.stats(replica: Inspection.Replica(id: config.replicaID, partitions: config.partitions.owned, partitionCount: config.partitions.count, ready: true), lag: [:])
        publishTableGauges(stats)
        readyFlag.store(true, ordering: .relaxed)
        metrics.ready.record(1)
        logger.info("fan-out ready", metadata: [
            "replica": "\(config.replicaID)", "partitions": "\(config.partitions)",
            "cold_start_s": "\(String(format: "%.3f", seconds))", "channels": "\(stats.channels)",
            "memberships": "\(stats.memberships)", "table_bytes": "\(stats.tableBytes)",
            "bytes_per_membership": "\(String(format: "%.2f", stats.bytesPerMembership))",
            "online_users": "\(stats.onlineUsers)", "instances": "\(stats.instances)",
        ])
    }

    /// Every owned partition's snapshot, loaded by one thread per core (each decodes and
    /// builds its own partitions; only interning user ids is serialized); partition →
    /// the sequence to replay from.
    private func loadSnapshots(store: SnapshotStore) -> [Int: UInt64] {
        let owned = config.partitions.owned
        let next = Atomic<Int>(0)
        let starts = Mutex<[Int: UInt64]>([:])
        DispatchQueue.concurrentPerform(iterations: max(1, min(owned.count, ProcessInfo.processInfo.activeProcessorCount))) { _ in
            while true {
                let index = next.add(1, ordering: .relaxed).oldValue
                guard index < owned.count else { return }
                let start = loadSnapshot(partition: owned[index], store: store)
                starts.withLock { $0[owned[index]] = start }
            }
        }
        return starts.withLock { $0 }
    }

    /// The sequence to replay membership from: one past the snapshot's, or 0 (everything).
    private func loadSnapshot(partition: Int, store: SnapshotStore) -> UInt64 {
        do {
            guard let manifest = try store.readManifest(partition: partition) else { return 0 }
            guard manifest.partitionCount == config.partitions.count else {
                throw FanoutError.snapshotCorrupt(partition: partition, reason: "written for \(manifest.partitionCount) partitions")
            }
            let image = try store.readImage(manifest)
            try state.load(image: image, partition: partition)
            logger.info("snapshot loaded", metadata: ["partition": "\(partition)", "membership_seq": "\(manifest.membershipSequence)", "bytes": "\(image.count)"])
            return manifest.membershipSequence + 1
        } catch {
            logger.warning("snapshot not used; replaying the partition from the start", metadata: ["partition": "\(partition)", "reason": "\(error)"])
            state.resetPartition(partition)
            return 0
        }
    }

    private func publishTableGauges(_ stats: Inspection.Stats) {
        metrics.tableBytes.record(Double(stats.tableBytes + stats.userIdBytes))
        metrics.memberships.record(Double(stats.memberships))
        metrics.channels.record(Double(stats.channels))
        metrics.onlineUsers.record(Double(stats.onlineUsers))
        metrics.instances.record(Double(stats.instances))
    }

    /// Bounds the wind-down after SIGTERM, so the process exits even when NATS is gone.
    static let shutdownBudget: Duration = .seconds(8)

    private func shutDown() async {
        readyFlag.store(false, ordering: .relaxed)
        metrics.ready.record(0)
        logger.info("fan-out stopping")
        let completed = await blocking { [self] in
            inspection?.stop()
            typing?.stop()
            pipelines.forEach { $0.requestStop() }
            membershipFeed?.requestStop()
            // Stopped side by side and bounded as a whole: with NATS unreachable, each
            // consumer close waits for its own API timeout.
            var stops: [@Sendable () -> Void] = []
            for pipeline in pipelines { stops.append { pipeline.stop(timeout: .seconds(5)) } }
            if let feed = membershipFeed { stops.append { feed.stop(timeout: .seconds(2)) } }
            if let snapshots { stops.append { snapshots.stop() } }
            if let presence { stops.append { presence.stop(timeout: .seconds(2)) } }
            let completed = runConcurrently(stops, within: Self.shutdownBudget)
            if connection?.isConnected == true && completed {
                connection?.drain(timeout: .seconds(3))
            } else {
                connection?.close()
            }
            return completed
        }
        logger.info("fan-out stopped", metadata: completed ? [:] : ["note": "some consumers did not close within \(Self.shutdownBudget)"])
    }
}

/// Runs `works` on threads of their own; true if all finished within `budget` (the rest are
/// left running: the caller is on its way out).
func runConcurrently(_ works: [@Sendable () -> Void], within budget: Duration) -> Bool {
    let group = DispatchGroup()
    for work in works {
        group.enter()
        Thread {
            work()
            group.leave()
        }.start()
    }
    let nanoseconds = UInt64(max(0, budget.nanoseconds))
    return group.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .success
}

/// Runs blocking C-library work on a dedicated thread so it never stalls the cooperative
/// pool (which the HTTP server and signal handling share).
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

func blocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}
