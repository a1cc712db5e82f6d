import Foundation
import Logging
import NATSClient
import ServiceLifecycle
import ServiceSupport
import SwitchboardContracts
import Synchronization

/// Holds, renews and takes over the owned partitions' leases in `FANOUT_LEASES`, on a thread
/// of its own, and posts each term on the `LeaseBoard` for the pipelines.
///
/// Replicas started with the same partitions coordinate through it alone: for each partition
/// the replica whose compare-and-set write lands holds the lease and delivers; the others stand
/// by with warm tables and take over once the entry stops changing for `takeoverAfter`
/// (`PartitionLease`). The keeper reads every entry once at start-up, then follows the stream
/// with an ordered consumer; a refused write makes it read that entry again.
final class LeaseKeeper: Service {
    let partitions: [Int]
    let board: LeaseBoard
    private let jetStream: JetStream
    private let timing: LeaseTiming
    private let replicaID: String
    /// This process's own id in lease entries and consumer names.
    let process: String
    private let metrics: FanoutMetrics
    private let logger: Logger
    /// Bounds each read and write of the lease store: a write that takes longer than a
    /// holder's margin would be of no use.
    private let storeTimeout: Duration
    /// When a store failure was last logged: an outage is one line a second, not one per turn.
    private let lastFailureLogged = Mutex<ContinuousClock.Instant?>(nil)

    /// `board` names this process (`LeaseBoard.process`) and holds the partitions it keeps.
    init(board: LeaseBoard, connection: NATSConnection, timing: LeaseTiming, replicaID: String, metrics: FanoutMetrics, logger: Logger) throws {
        partitions = board.partitions
        self.board = board
        process = board.process
        storeTimeout = min(.seconds(1), timing.holdFor)
        // A context of its own, so that every read and write waits at most `storeTimeout`.
        jetStream = try connection.jetStream(timeout: storeTimeout)
        self.timing = timing
        self.replicaID = replicaID
        self.metrics = metrics
        self.logger = logger
    }

    func run() async {
        await DedicatedThread.run(name: "leases") { [self] stop in keep(until: stop) }
        for partition in partitions { board.post(partition, grant: nil, holder: nil, read: false) }
        metrics.activePartitions.record(0)
    }

    /// What the loop holds between turns.
    private struct Turn {
        var leases: [Int: PartitionLease]
        /// Terms this process started per partition (numbers its consumers).
        var terms: [Int: Int] = [:]
        var watch: OrderedConsumer?
        /// A broken watch is opened again at most once a second.
        var watchAgainAt = ContinuousClock.now
        /// Entries to read again (at start, after a refused write, after a broken watch).
        var unread: Set<Int>
        /// One log line per distinct oddity (corrupt entry, another process's replica id, …).
        var reported: Set<String> = []
    }

    /// The keeper's loop, on the calling thread, until `stop` is raised; then it releases what
    /// it holds. `run` calls it on a thread of its own.
    func keep(until stop: StopSignal) {
        var turn = Turn(leases: Dictionary(uniqueKeysWithValues: partitions.map { ($0, PartitionLease(partition: $0, timing: timing, process: process)) }),
                        unread: Set(partitions))
        let tick = min(.milliseconds(50), timing.renewEvery / 2)
        while !stop.isRaised {
            readUnread(&turn)
            follow(&turn, wait: tick)
            let now = ContinuousClock.now
            for partition in partitions {
                turn.leases[partition]?.expire(at: now)
                guard let write = turn.leases[partition]?.due(at: now) else { continue }
                if let stalled = board.sinceTurned(partition, at: now), stalled >= timing.pipelineStall {
                    // A wedged pipeline must not keep a healthy standby out: its lease lapses
                    // and is not taken again until the pipeline turns.
                    if turn.reported.insert("stalled \(partition) \(turn.leases[partition]?.revision ?? 0)").inserted {
                        logger.error("the partition's pipeline has not turned for a while; letting its lease lapse so that a standby takes over", metadata: [
                            "partition": "\(partition)", "stalled_ms": "\(stalled.milliseconds)",
                        ])
                    }
                    continue
                }
                // The store did not answer: the other writes of this turn would wait as long.
                guard perform(write, partition: partition, turn: &turn) else { break }
            }
            postAll(turn)
        }
        release(&turn)
        turn.watch?.close()
    }

    /// At a graceful stop (the pipelines have stopped and confirmed what they published), each
    /// held lease is marked released with its confirmed position, so a standby takes it at once.
    private func release(_ turn: inout Turn) {
        for partition in partitions { board.post(partition, grant: nil, holder: nil) }
        for partition in partitions {
            guard let write = turn.leases[partition]?.release(at: .now) else { continue }
            if perform(write, partition: partition, turn: &turn, released: true), turn.leases[partition]?.record?.released == true {
                logger.info("partition lease released", metadata: ["partition": "\(partition)"])
            }
        }
    }

    private func readUnread(_ turn: inout Turn) {
        for partition in turn.unread.sorted() {
            do {
                let stored = try jetStream.lastMessage(stream: StreamNames.leases, subject: LeaseSubjects.lease(partition: partition))
                observe(partition, revision: stored?.sequence ?? 0, payload: stored?.payload, turn: &turn)
                turn.unread.remove(partition)
            } catch {
                storeFailed("reading a lease failed", partition: partition, error: error)
                return  // the others would wait as long
            }
        }
    }

    /// Takes what the watch brought within `wait`; a broken watch is opened again (and every
    /// entry read again, since it may have missed changes).
    private func follow(_ turn: inout Turn, wait: Duration) {
        do {
            if turn.watch == nil {
                guard ContinuousClock.now >= turn.watchAgainAt else { return Thread.sleep(forTimeInterval: Double(wait.nanoseconds) / 1e9) }
                turn.watchAgainAt = .now + .seconds(1)
                turn.watch = try jetStream.orderedConsumer(stream: StreamNames.leases, filterSubject: LeaseSubjects.all, startSequence: 0, createTimeout: storeTimeout)
            }
            var seen: [(partition: Int, revision: UInt64, payload: [UInt8])] = []
            _ = try turn.watch?.read(limit: 256, timeout: wait) { message in
                guard let partition = LeaseSubjects.partition(of: String(decoding: message.subject, as: UTF8.self)), turn.leases[partition] != nil else { return }
                seen.append((partition, message.streamSequence, Array(message.payload)))
            }
            for entry in seen { observe(entry.partition, revision: entry.revision, payload: entry.payload, turn: &turn) }
        } catch {
            storeFailed("following the leases failed", partition: nil, error: error)
            turn.watch?.close()
            turn.watch = nil
            turn.unread = Set(partitions)
        }
    }

    private func observe(_ partition: Int, revision: UInt64, payload: [UInt8]?, turn: inout Turn) {
        let held = turn.leases[partition]?.holding != nil
        turn.leases[partition]?.observe(revision: revision, payload: payload, at: .now)
        guard let lease = turn.leases[partition] else { return }
        if held, lease.holding == nil {
            metrics.leasesLost.increment()
            logger.warning("partition lease taken by another replica; standing by", metadata: [
                "partition": "\(partition)", "holder": "\(lease.record?.replica ?? "unreadable entry")",
            ])
        }
        report(lease, turn: &turn)
    }

    /// Names, once each, what the entry says that this deployment should not have.
    private func report(_ lease: PartitionLease, turn: inout Turn) {
        guard lease.revision > 0 else { return }
        guard let record = lease.record else {
            if turn.reported.insert("corrupt \(lease.partition) \(lease.revision)").inserted {
                logger.error("partition lease entry is unreadable; treated as held until it stops changing", metadata: [
                    "partition": "\(lease.partition)", "revision": "\(lease.revision)",
                ])
            }
            return
        }
        guard record.process != process else { return }
        if record.replica == replicaID, turn.reported.insert("replica \(record.process)").inserted {
            logger.error("another process runs with this replica id; the leases still give each partition one holder, but its metrics and logs are mixed with this one's", metadata: [
                "replica": "\(replicaID)", "other_process": "\(record.process)", "partition": "\(lease.partition)",
            ])
        }
        if record.partitions != partitions, turn.reported.insert("partitions \(record.process)").inserted {
            logger.warning("a replica sharing partitions owns a different set; each shared partition still has one holder", metadata: [
                "other_replica": "\(record.replica)", "other_partitions": "\(PartitionRanges.describe(record.partitions))",
                "partitions": "\(PartitionRanges.describe(partitions))",
            ])
        }
    }

    /// False when the store did not answer (a refused write is an answer).
    @discardableResult
    private func perform(_ write: PartitionLease.Write, partition: Int, turn: inout Turn, released: Bool = false) -> Bool {
        guard let lease = turn.leases[partition] else { return true }
        let expect: UInt64
        let consumer: String
        switch write {
        case .acquire(let revision):
            expect = revision
            if let own = lease.record, own.process == process {
                // Its own term taken back: the same consumer, still where this process left it.
                consumer = own.consumer
            } else {
                consumer = ConsumerNames.fanout(partition: partition, term: "\(process)-\((turn.terms[partition] ?? 0) + 1)")
            }
        case .renew(let revision):
            expect = revision
            consumer = lease.holding?.consumer ?? ""
        }
        // A new term carries the confirmed position on until its pipeline confirms anything.
        let carried = lease.holding != nil ? lease.holding?.replaced : lease.record
        let confirmed = board.confirmed(partition, consumer: consumer)
        let record = LeaseRecord(replica: replicaID, process: process, consumer: consumer, acked: confirmed?.seq ?? carried?.acked ?? 0,
                                 epoch: confirmed?.epoch ?? carried?.epoch, partitions: partitions, released: released ? true : nil)
        let sentAt = ContinuousClock.now
        do {
            let ack = try jetStream.publish(LeaseSubjects.lease(partition: partition), payload: record.encoded(),
                                            headers: ["Nats-Expected-Last-Subject-Sequence": "\(expect)"], timeout: storeTimeout)
            turn.leases[partition]?.wrote(write, revision: ack.sequence, record: record, sentAt: sentAt)
            if case .acquire = write {
                if lease.record?.process != process { turn.terms[partition] = (turn.terms[partition] ?? 0) + 1 }
                metrics.leasesAcquired.increment()
                logger.notice("partition lease acquired", metadata: [
                    "partition": "\(partition)", "consumer": "\(consumer)",
                    "from": "\(lease.record.map { "\($0.replica) (\($0.process))" } ?? (expect == 0 ? "none" : "unreadable entry"))",
                ])
            }
        } catch NATSError.jetStream(_, let code, _) where code == Self.wrongLastSequence {
            if lease.holding != nil {
                metrics.leasesLost.increment()
                logger.warning("partition lease was written over by another replica; standing by", metadata: ["partition": "\(partition)"])
            }
            turn.leases[partition]?.refused()
            turn.unread.insert(partition)
        } catch {
            storeFailed("writing a lease failed", partition: partition, error: error)
            return false
        }
        return true
    }

    private func postAll(_ turn: Turn) {
        var active = 0
        for partition in partitions {
            guard let lease = turn.leases[partition] else { continue }
            let grant = lease.holding.map { LeaseBoard.Grant(consumer: $0.consumer, validUntil: $0.validUntil, replaced: $0.replaced) }
            if grant != nil { active += 1 }
            board.post(partition, grant: grant, holder: lease.record, read: lease.unchangedSince != nil || lease.revision > 0)
        }
        metrics.activePartitions.record(active)
    }

    private func storeFailed(_ what: String, partition: Int?, error: any Error) {
        metrics.leaseStoreErrors.increment()
        let now = ContinuousClock.now
        let due = lastFailureLogged.withLock { last in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        logger.warning("\(what)", metadata: ["partition": "\(partition.map(String.init) ?? "all")", "error": "\(error)"])
    }

    /// JetStream's "wrong last sequence": the entry changed since the revision a write named.
    static let wrongLastSequence = 10071
}
