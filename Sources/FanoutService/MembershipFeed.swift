import Foundation
import Logging
import NATSClient
import RoutingCore
import SwitchboardContracts
import ServiceLifecycle
import ServiceSupport
import SwitchboardProto
import Synchronization

/// Keeps the owned partitions' channel tables equal to `CHAT_MEMBERSHIP`: replays the stream
/// from each partition's snapshot sequence (or the start) until caught up, then follows it
/// live, in order. One unfiltered consumer serves every owned partition: creating a consumer
/// with a wildcard filter (one partition's, or even the stream's own `chat.membership.*.*.*`)
/// makes nats-server 2.9 count the filter's pending messages by matching every subject of every
/// block, which took over 60 s at 20 M memberships, and each filtered consumer reads the whole
/// stream anyway. Other replicas' partitions are skipped here instead.
///
/// The replay reads through a `StreamScan` (its own connection, parsed in place: nats.c's
/// per-message hand-off was over a third of a replay's CPU); live, and whenever the scan
/// cannot serve (TLS, nkeys, a failure while reading), through nats.c's ordered consumer, from
/// just after the last sequence read. Reads block, so they run on a dedicated thread: first in
/// `catchUp()` (the warm-up waits for it), then live in `run()` until graceful shutdown.
final class MembershipFeed: Service {
    /// With nothing at all to replay, the first read waits this long before calling the
    /// feed caught up.
    static let emptyStreamWait: Duration = .milliseconds(300)
    /// nats.c always sends the subscription subject as the consumer's filter; the server
    /// treats `>` like no filter (its pending count is a subtraction).
    static let allMemberships = ">"

    /// Owned partition → the first stream sequence it still needs.
    let startSequences: [Int: UInt64]
    /// The same by partition number (0: not owned), read for every message of a replay.
    private let startByPartition: [UInt64]
    private let jetStream: JetStream
    private let reader = Mutex<(any OrderedStreamReader)?>(nil)
    /// The last stream sequence read (applied or skipped); a new consumer continues after it.
    /// Written by the feed thread only.
    private let lastSequence: Atomic<UInt64>
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let gauges: TableGauges
    private let logger: Logger
    private let isCaughtUp = Atomic<Bool>(false)

    /// Creates the consumer (a blocking call: the server may take long to create it on a large stream).
    init(startSequences: [Int: UInt64], jetStream: JetStream, state: RoutingState, metrics: FanoutMetrics, gauges: TableGauges, logger: Logger) throws {
        self.startSequences = startSequences.mapValues { max($0, 1) }
        var starts = [UInt64](repeating: 0, count: (startSequences.keys.max() ?? -1) + 1)
        for (partition, start) in self.startSequences { starts[partition] = start }
        startByPartition = starts
        self.jetStream = jetStream
        self.state = state
        self.metrics = metrics
        self.gauges = gauges
        self.logger = logger
        lastSequence = Atomic((self.startSequences.values.min() ?? 1) - 1)
        let first: any OrderedStreamReader
        do {
            first = try StreamScan(jetStream: jetStream, stream: StreamNames.membership, startSequence: lastSequence.load(ordering: .relaxed) + 1)
            logger.info("membership replay reads over a connection of its own", metadata: ["from_seq": "\(lastSequence.load(ordering: .relaxed) + 1)"])
        } catch {
            logger.notice("membership replay reads through the ordered consumer", metadata: ["reason": "\(error)"])
            first = try openConsumer()
        }
        reader.withLock { $0 = first }
    }

    private func openConsumer() throws -> OrderedConsumer {
        try jetStream.orderedConsumer(stream: StreamNames.membership, filterSubject: Self.allMemberships, startSequence: lastSequence.load(ordering: .relaxed) + 1, createTimeout: .seconds(60))
    }

    /// Replaces the consumer with one that starts after `lastSequence`; retried until it works
    /// or the feed stops.
    private func reopenConsumer(until stop: StopSignal) {
        reader.withLock { $0?.close(); $0 = nil }
        while !stop.isRaised {
            do {
                let consumer = try openConsumer()
                reader.withLock { $0 = consumer }
                return
            } catch {
                logger.warning("membership consumer not recreated; retrying", metadata: ["after_seq": "\(lastSequence.load(ordering: .relaxed))", "error": "\(error)"])
                stop.pause(.seconds(1))
            }
        }
    }

    /// Replays the stream; returns once caught up with it (or on graceful shutdown).
    func catchUp() async {
        await DedicatedThread.run(name: "membership-replay") { [self] stop in follow(until: stop, returningWhenCaughtUp: true) }
    }

    /// Follows the stream live until graceful shutdown.
    func run() async {
        await DedicatedThread.run(name: "membership") { [self] stop in
            // The scan has no reconnect: live reading goes through nats.c.
            if reader.withLock({ $0 is StreamScan }) { reopenConsumer(until: stop) }
            follow(until: stop, returningWhenCaughtUp: false)
            reader.withLock { $0?.close() }
        }
    }

    /// Most messages applied under one write lock.
    static let batchLimit = 1_024
    /// While replaying, a read that found fewer messages than this waits a little before the
    /// next, so that messages queue up: reading them one by one costs a thread wake-up each,
    /// which made the replay several times slower.
    static let replayBatchTarget = 256
    static let replayPause: Duration = .milliseconds(1)

    private func follow(until stop: StopSignal, returningWhenCaughtUp: Bool) {
        var sawAny = isCaughtUp.load(ordering: .relaxed)
        var batch: [RoutingState.MembershipRecord] = []
        batch.reserveCapacity(Self.batchLimit)
        while !stop.isRaised {
            guard let consumer = reader.withLock({ $0 }) else { reopenConsumer(until: stop); continue }
            let replaying = !isCaughtUp.load(ordering: .relaxed)
            var numPending: UInt64 = 0
            var readError: (any Error)?
            batch.removeAll(keepingCapacity: true)
            var count = 0
            do {
                count = try consumer.read(limit: Self.batchLimit, timeout: replaying && !sawAny ? Self.emptyStreamWait : .milliseconds(500)) { message in
                    numPending = message.numPending
                    lastSequence.store(message.streamSequence, ordering: .relaxed)
                    // Another replica's partition, or one this replica's snapshot already covers.
                    guard let partition = Subjects.membershipPartition(message.subject), startByPartition.indices.contains(partition),
                          case let start = startByPartition[partition], start > 0, message.streamSequence >= start else { return }
                    batch.append(RoutingState.MembershipRecord(partition: partition, sequence: message.streamSequence, subject: message.subject, payload: message.payload))
                }
            } catch {
                // What was read before the error is in order and complete: apply it first.
                readError = error
            }
            apply(batch)
            if !replaying && !batch.isEmpty { gauges.refreshCounts() }
            if let readError {
                if case NATSError.messagesDropped = readError {
                    logger.warning("membership reader fell behind; reading again after the last sequence", metadata: ["after_seq": "\(lastSequence.load(ordering: .relaxed))"])
                    reopenConsumer(until: stop)
                } else if consumer is StreamScan {
                    logger.warning("membership scan failed; reading on through the ordered consumer", metadata: ["after_seq": "\(lastSequence.load(ordering: .relaxed))", "error": "\(readError)"])
                    reopenConsumer(until: stop)
                } else {
                    logger.warning("membership read failed", metadata: ["error": "\(readError)"])
                    stop.pause(.milliseconds(200))
                }
                continue
            }
            guard count > 0 else {
                // Nothing at all to replay.
                if !sawAny { isCaughtUp.store(true, ordering: .relaxed) }
                if returningWhenCaughtUp && isCaughtUp.load(ordering: .relaxed) { return }
                continue
            }
            sawAny = true
            if numPending == 0 {
                isCaughtUp.store(true, ordering: .relaxed)
                if returningWhenCaughtUp { return }
            } else if replaying && batch.count < Self.replayBatchTarget {
                usleep(UInt32(Self.replayPause.nanoseconds / 1_000))
            }
        }
    }

    private func apply(_ batch: [RoutingState.MembershipRecord]) {
        guard !batch.isEmpty else { return }
        let rejected = state.apply(batch)
        metrics.membershipChanges.increment(by: batch.count - rejected.count)
        for (record, error) in rejected {
            // The stream is the membership set: a bad entry is skipped (and counted), not
            // retried forever. Its sequence still counts, so snapshots stay consistent.
            metrics.membershipRejected.increment()
            logger.error("membership change rejected", metadata: [
                "partition": "\(record.partition)", "stream_seq": "\(record.sequence)", "reason": "\(error)",
            ])
        }
    }
}
