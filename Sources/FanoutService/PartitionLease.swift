import Foundation

/// What a partition's lease entry in `FANOUT_LEASES` says: who holds it, the consumer its
/// term delivers through, and how far that holder has confirmed (for the next holder, and for
/// standbys that keep the partition's chain warm up to there).
struct LeaseRecord: Codable, Equatable, Sendable {
    /// The holder's `--replica-id`.
    var replica: String
    /// The holder process's own random id: two processes started with one replica id differ here.
    var process: String
    /// `ConsumerNames.fanout(partition:term:)` of the holder's term.
    var consumer: String
    /// Every event of the partition up to this stream sequence is confirmed and acked...
    var acked: UInt64
    /// ...in `CHAT_EVENTS` of this epoch (`StreamEpoch`): a position in a stream since
    /// deleted and created anew means nothing. Nil until the holder confirmed anything.
    var epoch: String?
    /// The partitions the holder owns (to name a configuration that differs between replicas).
    var partitions: [Int]
    /// Written by a holder that stopped gracefully: nothing of its term is in flight, and the
    /// lease may be taken at once.
    var released: Bool?

    /// Nil for anything that is not a lease record (a corrupt entry).
    static func decode(_ bytes: [UInt8]) -> LeaseRecord? {
        guard let record = try? JSONDecoder().decode(LeaseRecord.self, from: Data(bytes)),
              !record.process.isEmpty, !record.consumer.isEmpty else { return nil }
        return record
    }

    func encoded() -> [UInt8] { Array((try? JSONEncoder().encode(self)) ?? Data()) }
}

/// How long leases last; one set of values for every replica of a deployment.
struct LeaseTiming: Sendable {
    /// A lease whose entry has not changed for this long, as the observer's own clock tells,
    /// is taken over. Measuring from when the observer saw the entry change (never from a
    /// time written in it) keeps clocks of different machines out of it.
    var takeoverAfter: Duration = .milliseconds(1_000)
    /// The holder rewrites its entry this often...
    var renewEvery: Duration = .milliseconds(250)
    /// ...and delivers only until this long after it sent its last successful write. Shorter
    /// than `takeoverAfter`: the observer's clock starts after that send, so the holder has
    /// stopped before any observer may take over, with the difference as a margin for a
    /// thread that is descheduled between its check and its publish.
    var holdFor: Duration = .milliseconds(500)
    /// A holder whose pipeline has not turned for this long is taken as wedged and stops
    /// renewing, so that a healthy standby is not kept out. Well above the pipeline's longest
    /// legitimate waits while NATS is in trouble: JetStream requests of 5 s one after another,
    /// a consumer created with a 30 s timeout (10 s was seen to be too short when a NATS node
    /// died: the pipeline waited that long in such calls and gave its leases up).
    var pipelineStall: Duration = .seconds(60)

    init() {}

    init(takeoverAfter: Duration) {
        self.takeoverAfter = takeoverAfter
        renewEvery = takeoverAfter / 4
        holdFor = takeoverAfter / 2
    }
}

/// One partition's lease as this replica sees and holds it: what the store said last and
/// since when (by this replica's clock), and this replica's own term if it holds one. Pure
/// state, no I/O: the `LeaseKeeper` feeds it what it reads and carries out what it decides.
///
/// Safety rests on the store's compare-and-set, not on what was observed: every write names
/// the revision it replaces (`Nats-Expected-Last-Subject-Sequence`), so of two replicas that
/// decide to take a lease over at once, one write fails. Liveness rests on observation: a
/// holder that stops writing loses the lease `takeoverAfter` after its last write was seen.
struct PartitionLease {
    /// A term this replica holds.
    struct Holding: Equatable {
        /// The entry's revision (its stream sequence) after the last successful write.
        var revision: UInt64
        var consumer: String
        var validUntil: ContinuousClock.Instant
        var renewAt: ContinuousClock.Instant
        /// The entry this term replaced (its consumer and confirmed position), nil when there was none.
        var replaced: LeaseRecord?
    }

    /// A write the keeper is to make: `expect` is the revision it replaces (0: no entry yet).
    enum Write: Equatable {
        case acquire(expect: UInt64)
        case renew(expect: UInt64)
    }

    let partition: Int
    let timing: LeaseTiming
    /// This process's id in lease entries.
    let process: String
    /// The store's entry as last read: revision (0: none), its record (nil: none or unreadable).
    private(set) var revision: UInt64 = 0
    private(set) var record: LeaseRecord?
    /// When this replica saw `revision` first; nil until the store was read once.
    private(set) var unchangedSince: ContinuousClock.Instant?
    private(set) var holding: Holding?

    init(partition: Int, timing: LeaseTiming, process: String) {
        self.partition = partition
        self.timing = timing
        self.process = process
    }

    /// What the store holds now. An older revision than one already seen is ignored (a watch
    /// that lags a read). Another process's write over this replica's term ends the term.
    mutating func observe(revision: UInt64, payload: [UInt8]?, at now: ContinuousClock.Instant) {
        guard unchangedSince == nil || revision > self.revision || (revision == 0 && self.revision == 0) else { return }
        if unchangedSince == nil || revision != self.revision { unchangedSince = now }
        self.revision = revision
        record = payload.flatMap(LeaseRecord.decode)
        if let holding, revision > holding.revision, record?.process != process { self.holding = nil }
    }

    /// The write due now, if any.
    func due(at now: ContinuousClock.Instant) -> Write? {
        if let holding {
            return now >= holding.renewAt ? .renew(expect: holding.revision) : nil
        }
        guard let unchangedSince else { return nil }
        // Nobody else holds an entry that is this process's own (a term that ran out while the
        // store was unreachable): taken back at once, like a missing or released one.
        if revision == 0 || record?.released == true || record?.process == process { return .acquire(expect: revision) }
        return now - unchangedSince >= timing.takeoverAfter ? .acquire(expect: revision) : nil
    }

    /// A write sent at `sentAt` was stored as `revision`. An acquisition starts a term with
    /// `consumer`; a renewal extends the current one.
    mutating func wrote(_ write: Write, revision: UInt64, record written: LeaseRecord, sentAt: ContinuousClock.Instant) {
        let replaced: LeaseRecord?
        switch write {
        case .acquire: replaced = record
        case .renew:
            guard let holding else { return }
            replaced = holding.replaced
        }
        holding = Holding(revision: revision, consumer: written.consumer, validUntil: sentAt + timing.holdFor,
                          renewAt: sentAt + timing.renewEvery, replaced: replaced)
        self.revision = revision
        record = written
        unchangedSince = sentAt
    }

    /// The store refused a write (the entry changed since the revision it named): any term
    /// this replica held is over; what the entry is now must be read again.
    mutating func refused() {
        holding = nil
        unchangedSince = nil
    }

    /// The release to write at a graceful stop, for a term still held at `now`.
    func release(at now: ContinuousClock.Instant) -> Write? {
        holds(at: now).map { .renew(expect: $0.revision) }
    }

    /// This replica may deliver the partition at `now`: it holds a term whose last write is recent.
    func holds(at now: ContinuousClock.Instant) -> Holding? {
        guard let holding, now < holding.validUntil else { return nil }
        return holding
    }

    /// Ends a term whose time ran out without a renewal (the holder's writes failed).
    mutating func expire(at now: ContinuousClock.Instant) {
        if let holding, now >= holding.validUntil { self.holding = nil }
    }
}
