import Synchronization

/// What the `LeaseKeeper` and the event pipelines tell each other about the owned partitions:
/// the keeper posts each term it holds and what it sees of other holders; a pipeline delivers a
/// partition only while `grant` returns its term, and posts how far it has confirmed.
///
/// A grant carries its own deadline, so a pipeline stops delivering on time even when the
/// keeper's thread is held up and posts nothing.
final class LeaseBoard: Sendable {
    /// A term this replica holds for one partition.
    struct Grant: Equatable, Sendable {
        var consumer: String
        var validUntil: ContinuousClock.Instant
        /// The entry the term replaced: the previous holder's consumer and confirmed position.
        var replaced: LeaseRecord?
    }

    private struct Entry {
        var grant: Grant?
        /// The current holder's entry as last read (this replica's own included).
        var holder: LeaseRecord?
        /// Confirmed through, as the pipeline last posted for the consumer it names.
        var confirmed: Confirmed?
        /// The keeper has read the entry since it started.
        var read = false
        /// The pipeline delivers the partition (took it over and holds it).
        var delivering = false
        /// When the partition's pipeline last showed it is turning (nil: not started yet).
        var turnedAt: ContinuousClock.Instant?
    }

    private let entries: Mutex<[Int: Entry]>
    private let changeCount = Atomic<UInt64>(0)
    /// This process's id in lease entries.
    let process: String
    let partitions: [Int]

    init(partitions: [Int], process: String = LeaseBoard.newProcessID()) {
        self.process = process
        self.partitions = partitions
        entries = Mutex(Dictionary(uniqueKeysWithValues: partitions.map { ($0, Entry()) }))
    }

    /// Eight random base-36 characters: tells apart processes, also two with one replica id.
    static func newProcessID() -> String {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<8).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
    }

    /// Every partition is either delivered here or held by another process: the replica is
    /// active or a standby, not on its way to either (what `/readyz` waits for after warm-up).
    func settled() -> Bool {
        entries.withLock { entries in
            entries.values.allSatisfy { entry in
                entry.read && (entry.delivering || entry.holder.map { $0.process != process && $0.released != true } ?? false)
            }
        }
    }

    /// The pipeline of `partitions` is turning (once per cycle, and while a long read or a
    /// retry keeps it in one).
    func turning(_ partitions: [Int], at now: ContinuousClock.Instant = .now) {
        entries.withLock { entries in for partition in partitions { entries[partition]?.turnedAt = now } }
    }

    /// How long ago the partition's pipeline last turned (nil: it has not started).
    func sinceTurned(_ partition: Int, at now: ContinuousClock.Instant = .now) -> Duration? {
        entries.withLock { entries in entries[partition]?.turnedAt.map { now - $0 } }
    }

    /// The pipeline took the partition over (true) or stands by (false).
    func delivering(_ partition: Int, _ delivering: Bool) {
        entries.withLock { $0[partition]?.delivering = delivering }
    }

    /// The term to deliver `partition` under at `now`, nil when this replica must not.
    func grant(_ partition: Int, at now: ContinuousClock.Instant = .now) -> Grant? {
        entries.withLock { entries in
            guard let grant = entries[partition]?.grant, now < grant.validUntil else { return nil }
            return grant
        }
    }

    /// The partitions this replica delivers at `now`, ascending.
    func activePartitions(at now: ContinuousClock.Instant = .now) -> [Int] {
        entries.withLock { entries in entries.filter { $0.value.grant.map { now < $0.validUntil } ?? false }.keys.sorted() }
    }

    /// A confirmed position: through `seq` of `CHAT_EVENTS` of `epoch`, on `consumer`.
    struct Confirmed: Equatable, Sendable {
        var consumer: String
        var seq: UInt64
        var epoch: String
    }

    /// How far the partition's current holder has confirmed, in which stream (what a standby's
    /// chain may follow to).
    func holderConfirmed(_ partition: Int) -> (seq: UInt64, epoch: String?)? {
        entries.withLock { entries in entries[partition]?.holder.map { ($0.acked, $0.epoch) } }
    }

    /// Counts the posts that changed a grant: a pipeline that saw every grant at one count
    /// need not look again until the count moves or one of them expires.
    var changes: UInt64 { changeCount.load(ordering: .acquiring) }

    /// The keeper's view of one partition (`read`: it has read the entry at least once).
    func post(_ partition: Int, grant: Grant?, holder: LeaseRecord?, read: Bool = true) {
        let changed = entries.withLock { entries in
            let changed = entries[partition]?.grant != grant
            entries[partition]?.grant = grant
            entries[partition]?.holder = holder
            entries[partition]?.read = read
            return changed
        }
        // After the write, so that a pipeline reading the new count reads the new grant.
        if changed { changeCount.add(1, ordering: .releasing) }
    }

    /// The pipeline confirmed the partition through `seq` on `consumer`, in the stream of `epoch`.
    func confirmed(_ partition: Int, consumer: String, through seq: UInt64, epoch: String) {
        entries.withLock { $0[partition]?.confirmed = Confirmed(consumer: consumer, seq: seq, epoch: epoch) }
    }

    /// What the pipeline posted for `consumer` (a post for another term's consumer is stale).
    func confirmed(_ partition: Int, consumer: String) -> Confirmed? {
        entries.withLock { entries in
            guard let confirmed = entries[partition]?.confirmed, confirmed.consumer == consumer else { return nil }
            return confirmed
        }
    }
}
