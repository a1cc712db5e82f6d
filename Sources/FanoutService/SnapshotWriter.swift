import Foundation
import Logging
import Synchronization

/// Writes a partition's routing-table image to `ROUTING_SNAPSHOTS` after `snapshotEveryChanges`
/// membership changes, or `snapshotInterval` after the last image if anything changed, so a
/// restart replays only the tail of `CHAT_MEMBERSHIP`.
final class SnapshotWriter: @unchecked Sendable {
    private let store: SnapshotStore
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let config: FanoutConfig
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let finished = Mutex<Bool>(false)

    init(store: SnapshotStore, state: RoutingState, metrics: FanoutMetrics, config: FanoutConfig, logger: Logger) {
        self.store = store
        self.state = state
        self.metrics = metrics
        self.config = config
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in
            while !stopping.load(ordering: .relaxed) {
                for partition in state.partitionsDueForSnapshot(everyChanges: config.snapshotEveryChanges, interval: config.snapshotInterval) {
                    writeSnapshot(partition)
                }
                Thread.sleep(forTimeInterval: 1)
            }
            finished.withLock { $0 = true }
        }
        thread.name = "snapshots"
        thread.start()
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(3)
        while !finished.withLock({ $0 }) && ContinuousClock.now < deadline { usleep(10_000) }
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
