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
/// Warm-up, in order (readiness turns true only at the end):
/// 1. connect to NATS and apply `streams/` (idempotent);
/// 2. per owned partition, load the newest snapshot if one is complete and valid;
/// 3. replay `CHAT_MEMBERSHIP` from each partition's snapshot sequence until caught up;
/// 4. warm presence from Redis (subscribe, scan, apply the buffered deltas);
/// 5. subscribe the typing relay and the inspection responder, bind the event consumers.
///
/// It is then ready, as an active replica or a warm standby: of the replicas that own a
/// partition, the one holding its lease (`LeaseKeeper`) delivers it; the others keep their
/// tables and its chain warm and take over when the holder stops renewing.
///
/// Then its parts run as services of one inner `ServiceGroup`: the event pipelines, the
/// membership and presence feeds, the snapshot writer, the typing relay, the inspection
/// responder and the table gauges. Graceful shutdown stops them in reverse order (pipelines
/// first, each finishing the batch in hand, inspection last) within `shutdownBudget`, and
/// drains the NATS connection last, so everything published is flushed before it closes.
public final class FanoutService: Service {
    public let config: FanoutConfig
    private let logger: Logger
    private let metrics: FanoutMetrics
    let state: RoutingState
    private let readyFlag = Atomic<Bool>(false)
    /// The owned partitions' leases (inspection reports the active ones, `/readyz` waits for them).
    private let board: LeaseBoard
    private let started = ContinuousClock.now

    public init(config: FanoutConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        metrics = FanoutMetrics(partitions: config.partitions.owned)
        state = RoutingState(partitions: config.partitions.owned, partitionCount: config.partitions.count)
        board = LeaseBoard(partitions: config.partitions.owned)
    }

    /// True once the routing table is warm and every owned partition is delivered here or
    /// held by another replica this one stands by for (`/readyz`).
    public var isReady: Bool { readyFlag.load(ordering: .relaxed) && board.settled() }

    /// Bounds the services' wind-down after SIGTERM, so the process exits even when NATS is gone.
    static let shutdownBudget: Duration = .seconds(8)
    /// Bounds the final drain of the NATS connection.
    static let drainTimeout: Duration = .seconds(3)

    public func run() async throws {
        let connection: NATSConnection
        let services: [any Service]
        do {
            connection = try await blocking { [config, logger, metrics] in
                try NATSConnection(options: .init(
                    url: config.natsURL, name: "fanout-\(config.replicaID)", connectTimeout: .seconds(5),
                    tls: .files(ca: config.natsTLSCAFile, cert: config.natsTLSCertFile, key: config.natsTLSKeyFile),
                    authentication: config.natsAuthentication,
                    onAsyncError: { error in
                        metrics.natsAsyncErrors.increment()
                        logger.error("NATS server reported an error", metadata: ["error": "\(error)"])
                    },
                    // The pipeline thread writes each publish itself: no flusher-thread wake
                    // and 1 ms wait per read's deliveries.
                    sendAsap: true
                ))
            }
        } catch {
            logger.critical("fan-out start-up failed", metadata: ["error": "\(error)"])
            throw error
        }
        do {
            services = try await warmUp(connection)
        } catch {
            logger.critical("fan-out start-up failed", metadata: ["error": "\(error)"])
            connection.close()
            throw error
        }

        var configuration = ServiceGroupConfiguration(services: services.map { .init(service: $0) }, logger: logger)
        configuration.maximumGracefulShutdownDuration = Self.shutdownBudget
        let group = ServiceGroup(configuration: configuration)
        var completed = true
        do {
            try await withGracefulShutdownHandler {
                try await group.run()
            } onGracefulShutdown: { [self] in
                stopServing()
            }
        } catch {
            completed = false
            logger.warning("fan-out services did not stop cleanly", metadata: ["error": "\(error)"])
        }
        stopServing()
        let drained = try? await blocking { [completed] in
            guard completed && connection.isConnected else {
                connection.close()
                return false
            }
            connection.drain(timeout: Self.drainTimeout)
            return true
        }
        logger.info("fan-out stopped", metadata: drained == true ? [:] : ["note": "NATS connection closed without drain"])
    }

    private func stopServing() {
        guard readyFlag.exchange(false, ordering: .relaxed) else { return }
        metrics.ready.record(0)
        logger.info("fan-out stopping")
    }

    /// Steps 1–5 of the warm-up; returns the services that run from then on.
    private func warmUp(_ connection: NATSConnection) async throws -> [any Service] {
        let config = self.config
        let jetStream = try connection.jetStream()
        let definitions = try StreamDefinitions(directory: config.streamsDirectory, replicas: config.streamReplicas)
        guard definitions.partitionCount == config.partitions.count else {
            throw FanoutError.invalidConfiguration("--partition-count \(config.partitions.count) differs from the deployment's \(definitions.partitionCount) (\(config.streamsDirectory)/\(StreamDefinitions.deploymentFile))")
        }
        let transforms = try await blocking { try jetStream.serverSupportsStreamSubjectTransforms() }
        let applied = try await blocking { try definitions.apply(subjectTransforms: transforms, jetStream.applyStream(configJSON:)) }
        for stream in applied {
            logger.info("stream applied", metadata: ["stream": "\(stream.name)", "result": "\(stream.result)", "subject_transforms": "\(transforms)"])
        }

        let store = SnapshotStore(jetStream: jetStream)
        let snapshots = await SnapshotLoader(store: store, state: state, partitions: config.partitions.owned, partitionCount: config.partitions.count,
                                             replicaID: config.replicaID, logger: logger).load()

        let replayStarted = ContinuousClock.now
        let gauges = TableGauges(state: state, metrics: metrics)
        let membershipFeed = try await blocking { [state, metrics, logger] in
            try MembershipFeed(startSequences: snapshots.starts, jetStream: jetStream, state: state, metrics: metrics, gauges: gauges, logger: logger)
        }
        await membershipFeed.catchUp()
        logger.info("membership replayed", metadata: ["ms": "\((ContinuousClock.now - replayStarted).milliseconds)"])

        let presence = PresenceFeed(redisURL: config.redisURL, state: state, metrics: metrics, instanceTimeout: config.instanceTimeout, logger: logger)
        try await presence.warm()

        let leases = try LeaseKeeper(board: board, connection: connection, timing: config.leaseTiming, replicaID: config.replicaID, metrics: metrics, logger: logger)
        let pipelines = PartitionPipelines(pipelines: try await blocking { [state, metrics, logger] in
            try PartitionPipelines.groups(config.partitions.owned, threads: config.pipelineThreads).map { partitions in
                try EventPipeline(partitions: partitions, jetStream: jetStream, leases: leases.board,
                                  state: state, metrics: metrics, config: config, logger: logger)
            }
        })
        let typing = TypingRelay(connection: connection, state: state, metrics: metrics, partitions: config.partitions.owned, partitionCount: config.partitions.count, window: config.typingWindow, logger: logger)
        try typing.subscribe()
        let inspection = InspectionResponder(
            connection: connection, state: state,
            replica: { [self] in replica(ready: isReady) },
            lag: { pipelines.lag() },
            logger: logger
        )
        try inspection.subscribe()
        // The server has the typing and inspection subscriptions before the replica says it
        // is ready: a request right after /readyz answers 200 finds a responder.
        try await blocking { try connection.flush(timeout: .seconds(5)) }
        let snapshotWriter = SnapshotWriter(store: store, state: state, metrics: metrics, config: config, plan: snapshots.plan, logger: logger)

        state.compact()
        let seconds = Double((ContinuousClock.now - started).nanoseconds) / 1e9
        metrics.coldStartSeconds.record(seconds)
        let stats = state.stats(replica: replica(ready: true), lag: [:])
        gauges.refresh()
        if !Task.isShuttingDownGracefully {
            readyFlag.store(true, ordering: .relaxed)
            metrics.ready.record(1)
        }
        logger.info("fan-out ready", metadata: [
            "replica": "\(config.replicaID)", "process": "\(leases.process)", "partitions": "\(config.partitions)",
            "cold_start_s": "\(String(format: "%.3f", seconds))", "channels": "\(stats.channels)",
            "memberships": "\(stats.memberships)", "table_bytes": "\(stats.tableBytes)",
            "bytes_per_membership": "\(String(format: "%.2f", stats.bytesPerMembership))",
            "online_users": "\(stats.onlineUsers)", "instances": "\(stats.instances)",
        ])
        // Started together, stopped in reverse: pipelines first (each confirms what it
        // published), then the leases (released with the confirmed positions), inspection last.
        return [inspection, gauges, snapshotWriter, membershipFeed, presence, typing, leases, pipelines]
    }

    private func replica(ready: Bool) -> Inspection.Replica {
        Inspection.Replica(id: config.replicaID, partitions: config.partitions.owned, partitionCount: config.partitions.count, ready: ready,
                           activePartitions: board.activePartitions())
    }
}
