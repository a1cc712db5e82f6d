import Logging
import ServiceLifecycle
import ServiceSupport
import Synchronization

/// Writes a partition's routing-table image to `ROUTING_SNAPSHOTS` after `snapshotEveryChanges`
/// membership changes, or `snapshotInterval` after the last image if anything changed, so a
/// restart replays only the tail of `CHAT_MEMBERSHIP`. Writes block in nats.c (JetStream
/// publishes of the image's chunks), so it checks once a second on a dedicated thread.
///
/// Before an image it writes the dictionary entries the image needs that are not written yet
/// (this process's lineage, into the slot `SnapshotLoader` chose); partitions whose manifests
/// still name that slot's earlier lineage are rewritten first, since the new lineage replaces it.
final class SnapshotWriter: Service {
    static let checkInterval: Duration = .seconds(1)

    private let store: SnapshotStore
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let config: FanoutConfig
    private let logger: Logger
    private let replica: String
    private let slot: String
    private let lineage = UInt64.random(in: 1...UInt64.max)
    private let progress: Mutex<Progress>

    /// This lineage's segments written so far (a fresh writer has purged the slot first).
    struct Progress {
        var purged = false
        var segments = 0
        var users = 0
        var bytes = 0
        /// Partitions to rewrite at once.
        var rewrite: Set<Int>
    }

    init(store: SnapshotStore, state: RoutingState, metrics: FanoutMetrics, config: FanoutConfig, plan: SnapshotLoader.WritePlan, logger: Logger) {
        self.store = store
        self.state = state
        self.metrics = metrics
        self.config = config
        self.logger = logger
        replica = SnapshotStore.replicaToken(config.replicaID)
        slot = plan.slot
        progress = Mutex(Progress(rewrite: plan.rewrite))
    }

    func run() async {
        await DedicatedThread.run(name: "snapshots") { [self] stop in
            while !stop.isRaised {
                let due = Set(state.partitionsDueForSnapshot(everyChanges: config.snapshotEveryChanges, interval: config.snapshotInterval))
                for partition in due.union(progress.withLock { $0.rewrite }).sorted() where !stop.isRaised {
                    writeSnapshot(partition)
                }
                stop.pause(Self.checkInterval)
            }
        }
    }

    /// Writes one partition now (also used by tests and at shutdown-free moments).
    func writeSnapshot(_ partition: Int) {
        let started = ContinuousClock.now
        let (image, sequence, users) = state.image(partition: partition)
        do {
            let dictionary = try writeDictionary(through: users)
            let manifest = try store.write(image: image, partition: partition, partitionCount: config.partitions.count, membershipSequence: sequence,
                                           replica: config.replicaID, dictionary: dictionary)
            state.snapshotWritten(partition: partition, sequence: sequence)
            _ = progress.withLock { $0.rewrite.remove(partition) }
            metrics.snapshotsWritten.increment()
            logger.info("snapshot written", metadata: [
                "partition": "\(partition)", "membership_seq": "\(sequence)", "bytes": "\(manifest.bytes)",
                "chunks": "\(manifest.chunks)", "dictionary_users": "\(users)", "dictionary_bytes": "\(dictionary.bytes)",
                "ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
        } catch {
            metrics.snapshotErrors.increment()
            logger.warning("snapshot write failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
        }
    }

    /// Writes the dictionary's entries below `users` not written yet; returns the reference an
    /// image needing them carries. Held under the lock: segments go out in order, once.
    private func writeDictionary(through users: Int) throws -> SnapshotStore.DictionaryReference {
        try progress.withLock { progress in
            if !progress.purged {
                try store.purgeDictionary(replica: replica, slot: slot)
                progress.purged = true
            }
            while progress.users < users {
                let (bytes, end) = state.dictionarySegment(lineage: lineage, from: progress.users, maxBytes: SnapshotStore.chunkBytes)
                try store.writeDictionarySegment(bytes, replica: replica, slot: slot, index: progress.segments)
                progress.segments += 1
                progress.users = end
                progress.bytes += bytes.count
            }
            return SnapshotStore.DictionaryReference(replica: replica, slot: slot, lineage: String(lineage, radix: 16), users: users, bytes: progress.bytes)
        }
    }
}
