import Logging
import ServiceLifecycle
import ServiceSupport

/// Writes a partition's routing-table image to `ROUTING_SNAPSHOTS` after `snapshotEveryChanges`
/// membership changes, or `snapshotInterval` after the last image if anything changed, so a
/// restart replays only the tail of `CHAT_MEMBERSHIP`. Writes block in nats.c (JetStream
/// publishes of the image's chunks), so it checks once a second on a dedicated thread.
final class SnapshotWriter: Service {
    static let checkInterval: Duration = .seconds(1)

    private let store: SnapshotStore
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let config: FanoutConfig
    private let logger: Logger

    init(store: SnapshotStore, state: RoutingState, metrics: FanoutMetrics, config: FanoutConfig, logger: Logger) {
        self.store = store
        self.state = state
        self.metrics = metrics
        self.config = config
        self.logger = logger
    }

    func run() async {
        await DedicatedThread.run(name: "snapshots") { [self] stop in
            while !stop.isRaised {
                for partition in state.partitionsDueForSnapshot(everyChanges: config.snapshotEveryChanges, interval: config.snapshotInterval) where !stop.isRaised {
                    writeSnapshot(partition)
                }
                stop.pause(Self.checkInterval)
            }
        }
    }

    /// Writes one partition now (also used by tests and at shutdown-free moments).
    func writeSnapshot(_ partition: Int) {
        let started = ContinuousClock.now
        let (image, sequence) = state.image(partition: partition)
        do {
            let manifest = try store.write(image: image, partition: partition, partitionCount: config.partitions.count, membershipSequence: sequence, replica: config.replicaID)
            state.snapshotWritten(partition: partition, sequence: sequence)
            metrics.snapshotsWritten.increment()
            logger.info("snapshot written", metadata: [
                "partition": "\(partition)", "membership_seq": "\(sequence)", "bytes": "\(manifest.bytes)",
                "chunks": "\(manifest.chunks)", "ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
        } catch {
            metrics.snapshotErrors.increment()
            logger.warning("snapshot write failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
        }
    }
}
