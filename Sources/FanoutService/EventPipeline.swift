import Foundation
import Logging
import NATSClient
import RoutingCore
import ServiceLifecycle
import ServiceSupport
import SwitchboardContracts
import Synchronization

/// Consumes a set of `CHAT_EVENTS` partitions on one dedicated thread, each in stream order,
/// and turns each event into one `Delivery` per notifier instance with an online recipient.
///
/// It delivers a partition only while this replica holds the partition's lease (`LeaseBoard`,
/// checked before each publish and each ack), through the consumer of the lease's term; the
/// other partitions stand by with their chains kept warm (`PartitionTakeover`).
///
/// One cycle serves every partition: one read of the `PullFeed` (its pull requests are open
/// ahead of need, so no event waits for a request), the deliveries of everything read
/// gathered per instance into inbox messages and published at once. Confirmation is shared
/// and deferred: one flush confirms everything published so far on the connection, and is
/// followed by one ack-all per partition; it happens `config.ackInterval` after the oldest
/// unconfirmed event, or as soon as the feed is idle. Publishing never waits for it, so
/// under load the flush round trip and the acks are paid once per interval, not per event.
///
/// The ack path cannot skip: an event is acked only once its deliveries, and those of every
/// earlier event of its partition, are flushed (or the event is stored in `CHAT_DLQ`). When a
/// publish, a flush or a dead-letter publish fails, every unconfirmed event is retried
/// partition by partition, in order, each try published one delivery per message and
/// flushed, with exponential back-off; nothing is nak'ed. After `maxTries` failed tries in a
/// row an event goes to `CHAT_DLQ` with the reason and its partition moves on. Poison events
/// (undecodable, invalid or mismatched ids) go to `CHAT_DLQ` at once. Graceful shutdown
/// confirms what was published; during a retry it stops without acking what is unflushed
/// (redelivered on restart, from the ack floor).
///
/// Why `AckPolicy.all` stays correct: an ack-all of sequence S acks every pending sequence at
/// or below S. The pipeline is its partitions' only consumer, takes each partition's events in
/// order and never naks; a delivery lost on the way shows as a jump in the consumer's
/// delivery numbers, and the events it may have carried are then read from the stream and
/// taken before anything later (`ConsumerContinuity`). An ack of S goes out only after a flush
/// that followed the publishing of every event up to S. So every pending sequence below an ack
/// it sends is one it has flushed or dead-lettered. A redelivery of an event already taken (an
/// ack lost, an ack wait expired) is acked again, not delivered again.
final class EventPipeline: Service {
    /// Failed tries in a row after which an event goes to the DLQ instead of being retried.
    static let maxTries = 10

    let partitions: [Int]
    let output: any PipelineOutput
    /// Reads events straight from the stream when deliveries of them went missing.
    let jetStream: JetStream
    let feed: PullFeed
    let state: RoutingState
    let metrics: FanoutMetrics
    let logger: Logger
    let config: FanoutConfig
    let leases: LeaseBoard
    let startEpoch: String
    /// Messages not yet consumed, per partition (from the last delivery), for inspection.
    private let lags: Mutex<[Int: UInt64]>

    /// `output` nil: the production output, on the feed's own connection where it has one.
    init(partitions: [Int], jetStream: JetStream, output: (any PipelineOutput)? = nil, leases: LeaseBoard, state: RoutingState, metrics: FanoutMetrics, config: FanoutConfig, logger: Logger) throws {
        self.partitions = partitions
        self.state = state
        self.metrics = metrics
        self.config = config
        self.logger = logger
        self.jetStream = jetStream
        self.leases = leases
        startEpoch = StreamEpoch.of(createdNs: try jetStream.streamState(StreamNames.events).createdNs)
        // Every slot waits for its partition's lease before it sends a request.
        feed = try PullFeed(connection: jetStream.connection, stream: StreamNames.events, consumers: partitions.map { ConsumerNames.fanout(partition: $0) },
                            batch: config.fetchBatch, expires: config.pullExpires, heartbeat: config.pullHeartbeat, paused: true)
        self.output = output ?? (feed.hasOwnConnection
            ? FeedPipelineOutput(feed: feed, jetStream: jetStream)
            : NATSPipelineOutput(connection: jetStream.connection, jetStream: jetStream))
        logger.info(feed.hasOwnConnection ? "event pipeline reads and delivers over a connection of its own" : "event pipeline reads and delivers through nats.c",
                    metadata: ["partitions": "\(partitions.count)"])
        lags = Mutex(Dictionary(uniqueKeysWithValues: partitions.map { ($0, 0) }))
    }

    /// Binds a lease term's durable consumer of the partition: created to deliver after
    /// `startAfter` (the previous term's ack floor at a takeover; what was taken when the
    /// consumer was deleted under a running pipeline), or bound where it stands if it exists.
    static func bind(_ jetStream: JetStream, partition: Int, consumer: String, config: FanoutConfig, startAfter: UInt64?) throws -> PullSubscription.Start {
        try jetStream.bindPullConsumer(
            stream: StreamNames.events, durable: consumer, filterSubject: Subjects.events(partition: partition),
            ackWait: config.ackWait, maxAckPending: 20_000, ackPolicy: .all, startAfter: startAfter
        )
    }

    func run() async {
        let name = partitions.count == 1 ? "pipeline-p\(partitions[0])" : "pipeline-\(partitions.count)p"
        await DedicatedThread.run(name: name) { [self] stop in
            threadRunning.store(true, ordering: .releasing)
            defer { threadRunning.store(false, ordering: .releasing) }
            consume(until: stop)
            feed.close()
        }
    }

    /// The pipeline's thread is running (`run` had a thread to start it on).
    var isRunning: Bool { threadRunning.load(ordering: .acquiring) }
    private let threadRunning = Atomic<Bool>(false)

    /// Messages not yet consumed, per partition.
    func lag() -> [Int: UInt64] { lags.withLock { $0 } }

    /// What the pipeline's thread holds between cycles.
    struct Hand {
        var cursors: [PartitionCursor]
        /// Planner output, reused for every event.
        var plan = PlanBuffer()
        /// When the oldest unconfirmed event was published (nil: every event is confirmed).
        var unconfirmedSince: ContinuousClock.Instant?
        /// Deliveries went out since the last confirmation: a flush must precede the acks.
        var publishedSinceConfirm = false
        /// When the pipeline next tells the board it is turning.
        var turningPostDue = ContinuousClock.now
        /// The board's `changes` when the pipeline last looked at every grant, and until when
        /// what it saw holds without a change (nil: look on the next turn).
        var leasesLooked: (changes: UInt64, holdsUntil: ContinuousClock.Instant)?
    }

    private func consume(until stop: StopSignal) {
        var hand = Hand(cursors: partitions.enumerated().map { PartitionCursor(partition: $1, consumer: $0, epoch: startEpoch) })
        while !stop.isRaised {
            // The board is told and read only when due (`turningPostEvery`; a changed grant, an
            // expiring one or `boardLook`): at low rates a turn is one event, and doing both at
            // every turn cost about a fifth of the pipeline's CPU.
            let now = ContinuousClock.now
            if now >= hand.turningPostDue {
                leases.turning(partitions, at: now)
                hand.turningPostDue = now + Self.turningPostEvery
            }
            if let looked = hand.leasesLooked, looked.changes == leases.changes, now < looked.holdsUntil {
                // Every partition is delivered and every grant still valid as last seen.
            } else {
                guard takeUpLeases(&hand, stop: stop) else { return }
            }
            var wait = hand.unconfirmedSince.map { max(.zero, $0 + config.ackInterval - .now) } ?? .milliseconds(500)
            // A standby partition's lease may come any moment: look again soon.
            if hand.cursors.contains(where: { $0.term == nil }) { wait = min(wait, Self.standbyLook) }
            let batch: PullFeed.Batch
            do {
                batch = try feed.read(limit: config.fetchBatch, timeout: wait)
            } catch {
                logger.warning("pull failed", metadata: ["partitions": "\(partitions.count)", "error": "\(error)"])
                metrics.fetchErrors.increment()
                if stop.pause(.milliseconds(200)) { break }
                continue
            }
            for (consumer, reason) in batch.gone {
                logger.warning("consumer gone", metadata: ["partition": "\(hand.cursors[consumer].partition)", "reason": "\(reason)"])
                metrics.fetchErrors.increment()
                hand.cursors[consumer].recheckAt = .now
            }
            rebindMissing(&hand)
            if batch.messages.isEmpty {
                guard confirmIfPending(&hand, stop: stop), catchUpIdleGaps(&hand, stop: stop) else { return }
                continue
            }
            guard let fresh = admit(batch.messages, into: &hand, stop: stop), publish(fresh, hand: &hand, stop: stop) else { return }
            let due = hand.unconfirmedSince.map { ContinuousClock.now - $0 >= config.ackInterval } ?? false
            if due || hand.cursors.reduce(0, { $0 + $1.unconfirmed.count }) >= config.maxUnconfirmed {
                guard confirm(&hand, stop: stop) else { return }
            }
        }
        // Graceful shutdown: what was published is confirmed and acked.
        _ = confirmIfPending(&hand, stop: stop)
    }

    /// Takes a read's messages partition by partition: redeliveries of taken events, new
    /// events (linked into their channel's chain), and after a gap the missed events read from
    /// the stream first. Nil when asked to stop while reading the stream.
    private func admit(_ messages: [PullFeed.Message], into hand: inout Hand, stop: StopSignal) -> [[PartitionEvent]]? {
        metrics.fetchBatch.record(messages.count)
        metrics.eventsIn.increment(by: messages.count)
        var fresh = Array(repeating: [PartitionEvent](), count: hand.cursors.count)
        for message in messages where hand.cursors[message.consumer].term != nil {
            let index = message.consumer
            let metadata = message.metadata
            hand.cursors[index].lag = metadata.numPending
            switch hand.cursors[index].continuity.admit(streamSequence: metadata.streamSequence, consumerSequence: metadata.consumerSequence, firstDelivery: metadata.numDelivered <= 1) {
            case .taken:
                metrics.redeliveriesSkipped.increment()
                fresh[index].append(PartitionEvent(message, content: .taken))
            case .next:
                fresh[index].append(PartitionEvent(message, content: take(subject: message.subject, payload: message.payload, seq: metadata.streamSequence, chain: &hand.cursors[index].chain)))
            case .afterGap(let missed):
                guard let read = readFromStream(&hand.cursors[index], from: missed.lowerBound, before: missed.upperBound + 1, limit: .max, stop: stop) else { return nil }
                fresh[index] += read.events
                fresh[index].append(PartitionEvent(message, content: take(subject: message.subject, payload: message.payload, seq: metadata.streamSequence, chain: &hand.cursors[index].chain)))
            }
        }
        // Only the partitions this read brought something for.
        let read = hand.cursors.indices.filter { !fresh[$0].isEmpty }
        lags.withLock { lags in
            for index in read { lags[hand.cursors[index].partition] = hand.cursors[index].lag }
        }
        for index in read { metrics.setLag(partition: hand.cursors[index].partition, hand.cursors[index].lag) }
        return fresh
    }

    /// Deliveries went missing and none came since: the missing ones may be the newest
    /// events, so each such partition is read from the stream, a fetch batch per idle turn.
    private func catchUpIdleGaps(_ hand: inout Hand, stop: StopSignal) -> Bool {
        for index in hand.cursors.indices {
            guard let start = hand.cursors[index].continuity.idleGapStart else { continue }
            guard let read = readFromStream(&hand.cursors[index], from: start, before: nil, limit: config.fetchBatch, stop: stop) else { return false }
            if read.reachedNewest { hand.cursors[index].continuity.closeIdleGap() }
            var fresh = Array(repeating: [PartitionEvent](), count: hand.cursors.count)
            fresh[index] = read.events
            guard publish(fresh, hand: &hand, stop: stop), confirm(&hand, stop: stop) else { return false }
        }
        return true
    }

    /// One try at each partition's new events, in order, their deliveries gathered per
    /// instance across partitions. They join their partitions' unconfirmed events either way;
    /// on a failure every unconfirmed event is retried (`retryUnconfirmed`). False when asked
    /// to stop during a retry.
    private func publish(_ fresh: [[PartitionEvent]], hand: inout Hand, stop: StopSignal) -> Bool {
        var inboxes = InboxBatches(epoch: hand.cursors.first?.epoch ?? startEpoch, maxDeliveries: config.inboxBatchDeliveries, maxBytes: config.inboxBatchBytes)
        var failure: String?
        var published = 0
        var lost: [Int] = []
        partitions: for index in fresh.indices where !fresh[index].isEmpty {
            let (partition, term, epoch) = (hand.cursors[index].partition, hand.cursors[index].term, hand.cursors[index].epoch)
            // Not this replica's to deliver any more: the next holder delivers these.
            guard leases.grant(partition)?.consumer == term else {
                lost.append(index)
                continue
            }
            do {
                if epoch != inboxes.epoch {
                    try inboxes.publishAll(publishInboxMessage)
                    inboxes = InboxBatches(epoch: epoch, maxDeliveries: config.inboxBatchDeliveries, maxBytes: config.inboxBatchBytes)
                }
            } catch {
                failure = "publish failed: \(error)"
                break
            }
            for event in fresh[index] {
                switch outcome(of: event, partition: partition, plan: &hand.plan, into: &inboxes) {
                case .delivered(let count):
                    published += count
                case .poison(let reason):
                    if !deadLetter(event, partition: partition, reason: reason) { failure = "dead-letter publish failed for: \(reason)" }
                case .failed(let error):
                    failure = "publish failed: \(error)"
                }
                if failure != nil { break partitions }
            }
        }
        if failure == nil {
            do { try inboxes.publishAll(publishInboxMessage) } catch { failure = "publish failed: \(error)" }
        }
        for index in fresh.indices where !fresh[index].isEmpty { hand.cursors[index].unconfirmed += fresh[index] }
        // Unpublished, they stay unconfirmed: standing by unlinks them from the chain.
        for index in lost { standBy(index, &hand, reason: "its lease ran out before a publish") }
        if hand.unconfirmedSince == nil, hand.cursors.contains(where: { !$0.unconfirmed.isEmpty }) { hand.unconfirmedSince = .now }
        if published > 0 { hand.publishedSinceConfirm = true }
        if let failure { return retryUnconfirmed(&hand, after: failure, stop: stop) }
        return true
    }

    private func confirmIfPending(_ hand: inout Hand, stop: StopSignal) -> Bool {
        hand.unconfirmedSince == nil ? true : confirm(&hand, stop: stop)
    }

    /// One flush confirms every delivery published so far; then one ack-all per partition.
    /// A failed flush leaves unknown which deliveries reached the server: all are retried.
    private func confirm(_ hand: inout Hand, stop: StopSignal) -> Bool {
        if hand.publishedSinceConfirm {
            do {
                try output.flush(timeout: config.flushTimeout)
            } catch {
                metrics.flushErrors.increment()
                return retryUnconfirmed(&hand, after: "flush failed: \(error)", stop: stop)
            }
        }
        for index in hand.cursors.indices where !hand.cursors[index].unconfirmed.isEmpty {
            guard leases.grant(hand.cursors[index].partition)?.consumer == hand.cursors[index].term else {
                standBy(index, &hand, reason: "its lease ran out before an ack")
                continue
            }
            acknowledge(hand.cursors[index].unconfirmed[...], partition: hand.cursors[index].partition, epoch: hand.cursors[index].epoch)
            hand.cursors[index].confirmed(hand.cursors[index].unconfirmed[...])
            hand.cursors[index].unconfirmed.removeAll(keepingCapacity: true)
        }
        metrics.confirmations.increment()
        hand.unconfirmedSince = nil
        hand.publishedSinceConfirm = false
        return true
    }

    /// After a failure, every partition's unconfirmed events are delivered again in order,
    /// each try flushed (`deliver`), until each is flushed or dead-lettered. False when asked
    /// to stop during a retry: the rest stays unacked.
    private func retryUnconfirmed(_ hand: inout Hand, after failure: String, stop: StopSignal) -> Bool {
        logger.warning("delivery failed; retrying unconfirmed events in order", metadata: [
            "events": "\(hand.cursors.reduce(0) { $0 + $1.unconfirmed.count })", "reason": "\(failure)",
        ])
        for index in hand.cursors.indices where !hand.cursors[index].unconfirmed.isEmpty {
            let cursor = hand.cursors[index]
            let (end, acked) = deliver(cursor.unconfirmed, partition: cursor.partition, epoch: cursor.epoch, plan: &hand.plan, stop: stop)
            hand.cursors[index].confirmed(cursor.unconfirmed[..<acked])
            hand.cursors[index].unconfirmed.removeFirst(acked)
            switch end {
            case .done: break
            case .stopped: return false
            case .leaseLost: standBy(index, &hand, reason: "its lease ran out during a retry")
            }
        }
        hand.unconfirmedSince = nil
        hand.publishedSinceConfirm = false
        return true
    }

    func publishInboxMessage(_ subject: String, _ payload: [UInt8]) throws {
        try output.publish(subject, payload: payload)
        metrics.inboxMessages.increment()
    }
}
