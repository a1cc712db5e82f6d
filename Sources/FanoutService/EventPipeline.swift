import Foundation
import Logging
import NATSClient
import RoutingCore
import SwitchboardContracts
import ServiceLifecycle
import ServiceSupport
import SwitchboardProto
import Synchronization

/// Consumes one partition of `CHAT_EVENTS` in stream order on a dedicated thread (its fetch
/// blocks in nats.c) and turns each event into one `Delivery` per notifier instance with an
/// online recipient.
///
/// The ack path cannot skip: an event is acked only once its deliveries, and those of every
/// earlier event of the partition, are flushed (or the event is stored in `CHAT_DLQ`). A batch
/// that fails (a publish, the flush, a dead-letter publish) is kept in hand and retried from
/// its first unflushed event, in order, with exponential back-off, before anything later is
/// fetched; nothing is nak'ed. One try is one attempt to publish an event's deliveries and
/// flush them; after `maxTries` failed tries in a row the event goes to `CHAT_DLQ` with the
/// reason and the partition moves on. Poison events (undecodable, invalid or mismatched ids)
/// go to `CHAT_DLQ` at once. Graceful shutdown finishes the batch in hand; during a retry it
/// stops without acking what is unflushed (redelivered on restart, from the ack floor).
///
/// Why `AckPolicy.all` stays correct (and one ack per batch is cheaper than one per event):
/// an ack-all of sequence S acks every pending sequence at or below S. This pipeline is its
/// partition's only consumer, fetches the next batch only once the one in hand is acked to its
/// end, and never naks; a delivery lost on the way shows as a jump in the consumer's delivery
/// numbers, and the events it may have carried are then read from the stream and handled
/// before anything later (`ConsumerContinuity`). So every pending sequence below an ack it
/// sends is one it has flushed or dead-lettered. A redelivery of an event already handled (an
/// ack lost, an ack wait expired) is acked again, not delivered again.
final class EventPipeline: Service {
    /// Failed tries in a row after which an event goes to the DLQ instead of being retried.
    static let maxTries = 10

    let partition: Int
    private let output: any PipelineOutput
    /// The consumer bound at start-up; the pipeline's thread binds a new one when the stream
    /// is created anew (`rebindIfCreatedAnew`).
    private let initialSubscription: PullSubscription
    /// Reads events straight from the stream when deliveries of them went missing.
    private let jetStream: JetStream
    /// `CHAT_EVENTS`' epoch (`StreamEpoch`), stamped on every inbox message.
    private let epoch: Mutex<String>
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let logger: Logger
    private let config: FanoutConfig
    /// Messages not yet consumed in this partition, from the last fetched message.
    let lag = Atomic<UInt64>(0)

    init(partition: Int, jetStream: JetStream, output: any PipelineOutput, state: RoutingState, metrics: FanoutMetrics, config: FanoutConfig, logger: Logger) throws {
        self.partition = partition
        self.output = output
        self.state = state
        self.metrics = metrics
        self.config = config
        self.logger = logger
        self.jetStream = jetStream
        epoch = Mutex(StreamEpoch.of(createdNs: try jetStream.streamState(StreamNames.events).createdNs))
        initialSubscription = try Self.subscribe(jetStream, partition: partition, config: config)
    }

    private static func subscribe(_ jetStream: JetStream, partition: Int, config: FanoutConfig) throws -> PullSubscription {
        try jetStream.pullSubscribe(
            stream: StreamNames.events, durable: ConsumerNames.fanout(partition: partition), filterSubject: Subjects.events(partition: partition),
            ackWait: config.ackWait, maxAckPending: 20_000, ackPolicy: .all, restartAtAckFloor: true
        )
    }

    /// What the pipeline knows of a consumer it has just bound: everything up to its ack floor
    /// was taken, and it numbers deliveries on from where it stands.
    private static func continuity(from start: PullSubscription.Start) -> ConsumerContinuity {
        ConsumerContinuity(takenThrough: start.ackFloor, lastConsumerSequence: start.lastConsumerSequence)
    }

    func run() async {
        await DedicatedThread.run(name: "pipeline-p\(partition)") { [self] stop in
            consume(until: stop).unsubscribe()
        }
    }

    /// Consumes until asked to stop; returns the subscription it ended on.
    private func consume(until stop: StopSignal) -> PullSubscription {
        var subscription = initialSubscription
        var batch: [JetStreamMessage] = []
        var events: [PartitionEvent] = []
        var continuity = Self.continuity(from: subscription.start)
        guard var chain = rebuildChain(through: subscription.start.ackFloor, stop: stop) else { return subscription }
        /// Planner output, reused for every event.
        var plan = PlanBuffer()
        /// A fetch failed: until the stream is seen again with its epoch, each idle turn looks
        /// whether it was created anew (later fetches of a consumer that went with the old
        /// stream come back empty rather than failing).
        var checkingStream = false
        while !stop.isRaised {
            do {
                batch = try subscription.fetch(batch: config.fetchBatch, timeout: .milliseconds(500))
            } catch {
                logger.warning("fetch failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
                metrics.fetchErrors.increment()
                checkingStream = true
            }
            if checkingStream {
                switch rebindIfCreatedAnew(replacing: subscription) {
                case .rebound(let rebound):
                    subscription = rebound
                    continuity = Self.continuity(from: rebound.start)
                    chain = ChannelChain()
                    checkingStream = false
                    continue
                case .same:
                    checkingStream = false
                case .unknown:
                    break
                }
                if batch.isEmpty { stop.pause(.milliseconds(200)) }
            }
            if batch.isEmpty {
                if let start = continuity.idleGapStart {
                    guard catchUp(from: start, before: nil, continuity: &continuity, chain: &chain, plan: &plan, stop: stop) else { return subscription }
                    continuity.closeIdleGap()
                }
                continue
            }
            metrics.fetchBatch.record(batch.count)
            metrics.eventsIn.increment(by: batch.count)
            if let last = batch.last { lag.store(last.metadata.numPending, ordering: .relaxed) }
            metrics.setLag(partition: partition, lag.load(ordering: .relaxed))
            for message in batch {
                let metadata = message.metadata
                let verdict = continuity.admit(streamSequence: metadata.streamSequence, consumerSequence: metadata.consumerSequence, firstDelivery: metadata.numDelivered <= 1)
                switch verdict {
                case .taken:
                    metrics.redeliveriesSkipped.increment()
                    events.append(PartitionEvent(message, content: .taken))
                case .next:
                    events.append(PartitionEvent(message, content: take(subject: message.subject, payload: message.payload, seq: metadata.streamSequence, chain: &chain)))
                case .afterGap(let missed):
                    guard deliver(events, plan: &plan, stop: stop) else { return subscription }
                    events.removeAll(keepingCapacity: true)
                    guard catchUp(from: missed.lowerBound, before: missed.upperBound + 1, continuity: &continuity, chain: &chain, plan: &plan, stop: stop) else { return subscription }
                    events.append(PartitionEvent(message, content: take(subject: message.subject, payload: message.payload, seq: metadata.streamSequence, chain: &chain)))
                }
            }
            guard deliver(events, plan: &plan, stop: stop) else { return subscription }
            batch.removeAll(keepingCapacity: true)
            events.removeAll(keepingCapacity: true)
        }
        return subscription
    }

    private enum Rebinding {
        /// The stream was created anew; this consumer is bound on it.
        case rebound(PullSubscription)
        /// The stream is the one the pipeline started on.
        case same
        /// The stream cannot be read now (deleted and not created again yet, or NATS away).
        case unknown
    }

    /// After a failed fetch: when `CHAT_EVENTS` was deleted and created anew (its epoch
    /// changed), the consumer went with the old stream; binds a new one on the new stream,
    /// whose numbering starts again.
    private func rebindIfCreatedAnew(replacing old: PullSubscription) -> Rebinding {
        guard let created = try? jetStream.streamState(StreamNames.events).createdNs else { return .unknown }
        let now = StreamEpoch.of(createdNs: created)
        let previous = epoch.withLock { $0 }
        guard now != previous else { return .same }
        guard let rebound = try? Self.subscribe(jetStream, partition: partition, config: config) else { return .unknown }
        old.unsubscribe()
        epoch.withLock { $0 = now }
        metrics.streamsCreatedAnew.increment()
        logger.notice("CHAT_EVENTS was created anew: consuming the new stream", metadata: [
            "partition": "\(partition)", "epoch_from": "\(previous)", "epoch_to": "\(now)",
        ])
        return .rebound(rebound)
    }

    /// Relinks the chain from what the partition's stream holds up to the consumer's ack
    /// floor; the events after it come through the consumer and are linked as they are
    /// taken. One read of the partition's stored events at start-up (logged with its time).
    /// Nil when asked to stop first; read failures are retried with back-off.
    private func rebuildChain(through ackFloor: UInt64, stop: StopSignal) -> ChannelChain? {
        guard ackFloor > 0 else { return ChannelChain() }
        let started = ContinuousClock.now
        let partitionCount = config.partitions.count
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        while !stop.isRaised {
            do {
                var chain = ChannelChain()
                var events = 0
                let consumer = try jetStream.orderedConsumer(stream: StreamNames.events, filterSubject: Subjects.events(partition: partition), startSequence: 0, createTimeout: .seconds(30))
                defer { consumer.close() }
                var done = false
                while !done && !stop.isRaised {
                    let read = try consumer.read(limit: 1024, timeout: .seconds(1)) { message in
                        guard !done, message.streamSequence <= ackFloor else { done = true; return }
                        let subject = String(decoding: message.subject, as: UTF8.self)
                        if case .event(let event) = StoredEvent.examine(subject: subject, payload: message.payload, partitionCount: partitionCount) {
                            _ = chain.link(channel: event.channelID, seq: message.streamSequence)
                        }
                        events += 1
                        if message.streamSequence == ackFloor || message.numPending == 0 { done = true }
                    }
                    if read == 0 { done = true }  // nothing stored up to the floor (purged)
                }
                guard !stop.isRaised else { return nil }
                logger.info("channel chain rebuilt from the stream", metadata: [
                    "partition": "\(partition)", "through_seq": "\(ackFloor)", "events": "\(events)",
                    "channels": "\(chain.channelCount)", "ms": "\((ContinuousClock.now - started).milliseconds)",
                ])
                return chain
            } catch {
                logger.warning("rebuilding the channel chain failed; retrying", metadata: ["partition": "\(partition)", "error": "\(error)"])
                if stop.pause(backoff.next()) { return nil }
            }
        }
        return nil
    }

    /// Reads the partition's events from `from` up to `before` (nil: the newest) from the
    /// stream and delivers them in order, a fetch batch at a time: deliveries of them went
    /// missing on the way. Read failures are retried with back-off; false when asked to stop.
    private func catchUp(from: UInt64, before: UInt64?, continuity: inout ConsumerContinuity, chain: inout ChannelChain, plan: inout PlanBuffer, stop: StopSignal) -> Bool {
        logger.warning("deliveries went missing on the way; reading the partition from the stream", metadata: [
            "partition": "\(partition)", "from_seq": "\(from)", "before_seq": "\(before.map(String.init) ?? "newest")",
        ])
        metrics.gapsFilled.increment()
        var next = from
        var chunk: [PartitionEvent] = []
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        while before.map({ next < $0 }) ?? true {
            let stored: JetStream.StoredMessage?
            do {
                stored = try jetStream.nextMessage(stream: StreamNames.events, matching: Subjects.events(partition: partition), atOrAfter: next)
            } catch {
                logger.warning("reading a missed event failed; retrying", metadata: ["partition": "\(partition)", "from_seq": "\(next)", "error": "\(error)"])
                if stop.pause(backoff.next()) { return false }
                continue
            }
            backoff.reset()
            guard let stored, before.map({ stored.sequence < $0 }) ?? true else { break }
            chunk.append(PartitionEvent(stored, content: take(subject: stored.subject, payload: stored.payload, seq: stored.sequence, chain: &chain)))
            continuity.tookFromStream(stored.sequence)
            metrics.eventsReadAfterGap.increment()
            next = stored.sequence + 1
            if chunk.count >= config.fetchBatch {
                guard deliver(chunk, plan: &plan, stop: stop) else { return false }
                chunk.removeAll(keepingCapacity: true)
            }
        }
        return deliver(chunk, plan: &plan, stop: stop)
    }

    /// Delivers and acks `batch` in order, retrying from its first unflushed event until every
    /// event is flushed or dead-lettered. False when asked to stop during a retry: the
    /// unflushed rest is left unacked.
    private func deliver(_ batch: [PartitionEvent], plan: inout PlanBuffer, stop: StopSignal) -> Bool {
        var start = 0
        var tries = 0
        /// The first try gathers deliveries into batched inbox messages; after a failure,
        /// the rest of this batch goes one delivery per message.
        var batched = true
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        var reported = ContinuousClock.now
        while start < batch.count {
            let (done, failure) = attempt(batch[start...], batched: batched, plan: &plan)
            if done > 0 {
                acknowledge(batch[start..<(start + done)])
                start += done
                tries = 0
                backoff.reset()
            }
            guard let failure, start < batch.count else { continue }
            batched = false
            tries += 1
            metrics.retries.increment()
            let event = batch[start]
            if tries >= Self.maxTries, deadLetter(event, reason: "\(failure) (after \(tries) tries)") {
                acknowledge(batch[start...start])
                start += 1
                tries = 0
                backoff.reset()
                continue
            }
            logger.warning("delivery failed; retrying in order", metadata: [
                "partition": "\(partition)", "stream_seq": "\(event.streamSequence)",
                "try": "\(tries)", "held": "\(batch.count - start)", "reason": "\(failure)",
            ])
            keepHeld(batch[start...], reported: &reported)
            if stop.pause(backoff.next()) {
                logger.warning("stopping during a retry; unflushed events stay unacked", metadata: ["partition": "\(partition)", "events": "\(batch.count - start)"])
                return false
            }
            keepHeld(batch[start...], reported: &reported)
        }
        return true
    }

    /// One try at `events`: plans them in order up to the first failure, gathering their
    /// deliveries per instance (`batched`: several events to one inbox message; otherwise one
    /// message per delivery), publishes, then flushes. Returns how many leading events are
    /// done (flushed, dead-lettered or without recipients) and the failure that stopped the
    /// rest, if any. A failed flush, or a failed publish of a batched message, leaves none
    /// done: which deliveries reached the server is unknown. Retries go unbatched, so that a
    /// failing delivery is pinned on its own event.
    private func attempt(_ events: ArraySlice<PartitionEvent>, batched: Bool, plan: inout PlanBuffer) -> (done: Int, failure: String?) {
        var inboxes = InboxBatches(epoch: epoch.withLock { $0 }, maxDeliveries: batched ? config.inboxBatchDeliveries : 1, maxBytes: config.inboxBatchBytes)
        var handled = 0
        var published = 0
        var failure: String?
        for event in events {
            let outcome: Outcome
            switch event.content {
            case .taken: outcome = .delivered(0)
            case .poison(let reason): outcome = .poison(reason)
            case .event(let chatEvent, let prev): outcome = handle(event, chatEvent, prev: prev, plan: &plan, into: &inboxes)
            }
            switch outcome {
            case .delivered(let count):
                published += count
            case .poison(let reason):
                if !deadLetter(event, reason: reason) { failure = "dead-letter publish failed for: \(reason)" }
            case .failed(let error):
                failure = "publish failed: \(error)"
                if batched { return (0, failure) }
            }
            if failure != nil { break }
            handled += 1
        }
        do {
            try inboxes.publishAll(publishInboxMessage)
        } catch {
            return (0, "publish failed: \(error)")
        }
        if published > 0 {
            do {
                try output.flush(timeout: config.flushTimeout)
            } catch {
                metrics.flushErrors.increment()
                return (0, "flush failed: \(error)")
            }
        }
        return (handled, failure)
    }

    private func publishInboxMessage(_ subject: String, _ payload: [UInt8]) throws {
        try output.publish(subject, payload: payload)
        metrics.inboxMessages.increment()
    }

    /// Acks `events` that are done with one ack-all: of the delivery with the highest stream
    /// sequence among them (events read from the stream after a gap have none of their own;
    /// a later delivery's ack covers them).
    private func acknowledge(_ events: ArraySlice<PartitionEvent>) {
        let newest = events.lazy.compactMap(\.delivery).max { $0.metadata.streamSequence < $1.metadata.streamSequence }
        if let newest {
            do { try newest.ack() } catch { metrics.ackErrors.increment() }
        }
        metrics.eventsAcked.increment(by: events.count)
    }

    /// Once a retry has held events for a third of the ack wait, tells the server they are
    /// still in progress, so that it does not redeliver them behind the pipeline's back.
    private func keepHeld(_ events: ArraySlice<PartitionEvent>, reported: inout ContinuousClock.Instant) {
        guard ContinuousClock.now - reported >= config.ackWait / 3 else { return }
        for event in events { try? event.delivery?.inProgress() }
        reported = .now
    }

    private enum Outcome {
        case delivered(Int)
        case poison(String)
        case failed(any Error)
    }

    /// What an event is, decided once when the pipeline first takes it: poison, or an event
    /// linked into its channel's chain.
    private func take(subject: String, payload: [UInt8], seq: UInt64, chain: inout ChannelChain) -> PartitionEvent.Content {
        switch StoredEvent.examine(subject: subject, payload: payload, partitionCount: config.partitions.count) {
        case .poison(let reason):
            return .poison(reason)
        case .event(let event):
            return .event(event, prev: chain.link(channel: event.channelID, seq: seq))
        }
    }

    private func handle(_ message: PartitionEvent, _ event: ChatEvent, prev: UInt64, plan: inout PlanBuffer, into inboxes: inout InboxBatches) -> Outcome {
        let started = ContinuousClock.now
        let recipients = state.plan(partition: partition, channel: event.channelID, skipUser: event.skipSenderEcho ? event.senderID : nil, into: &plan)
        metrics.planning.recordNanoseconds(Int64((ContinuousClock.now - started).nanoseconds))
        metrics.recipients.increment(by: recipients)
        if plan.targets.isEmpty {
            metrics.eventsWithoutRecipients.increment()
            return .delivered(0)
        }
        let sequence = message.streamSequence
        do {
            try message.payload.withUnsafeBytes { eventBytes in
                for index in 0..<plan.targets.count {
                    let bytes = plan.slots[index].withUnsafeBufferPointer { slots in
                        plan.positionSlots[index].withUnsafeBufferPointer { positionSlots in
                            // Positions alone need no content: the event's bytes stay home.
                            Delivery.encode(streamSeq: sequence, prevSeq: prev, channelID: event.channelID, event: slots.isEmpty ? UnsafeRawBufferPointer(start: nil, count: 0) : eventBytes,
                                            slots: slots, positionSlots: positionSlots)
                        }
                    }
                    try inboxes.add(bytes, to: plan.targets[index].inboxSubject, publish: publishInboxMessage)
                }
            }
        } catch {
            return .failed(error)
        }
        metrics.deliveries.increment(by: plan.targets.count)
        return .delivered(plan.targets.count)
    }

    /// Stores the event in `CHAT_DLQ` with the reason (nothing is lost); it is acked with the
    /// events around it. False when the DLQ publish failed: the event must then be retried.
    private func deadLetter(_ message: PartitionEvent, reason: String) -> Bool {
        var headers = NATSHeaders()
        headers[HeaderNames.reason] = reason
        headers[HeaderNames.subject] = message.subject
        headers[HeaderNames.streamSequence] = "\(message.streamSequence)"
        do {
            try output.deadLetter(Subjects.deadLetter(partition: partition), payload: message.payload, headers: headers, msgID: "\(StreamNames.events)-\(message.streamSequence)-\(message.timestampNs)")
        } catch {
            logger.error("dead-letter publish failed; event kept for a retry", metadata: ["partition": "\(partition)", "error": "\(error)"])
            return false
        }
        metrics.deadLettered.increment()
        logger.error("event dead-lettered", metadata: [
            "partition": "\(partition)", "subject": "\(message.subject)",
            "stream_seq": "\(message.streamSequence)", "reason": "\(reason)",
        ])
        return true
    }
}

/// An event in a pipeline's hands: delivered by its consumer, or read from the stream after
/// deliveries went missing (then without a delivery of its own to ack).
struct PartitionEvent {
    let subject: String
    let payload: [UInt8]
    let streamSequence: UInt64
    let timestampNs: Int64
    let delivery: JetStreamMessage?
    let content: Content

    enum Content {
        /// Handled before (this is a redelivery): acked with the rest, not delivered again.
        case taken
        /// Dead-lettered with this reason; not in its channel's chain.
        case poison(String)
        /// Delivered; `prev` is the channel's previous event (`ChannelChain`).
        case event(ChatEvent, prev: UInt64)
    }

    init(_ message: JetStreamMessage, content: Content) {
        subject = message.subject
        payload = message.payload
        streamSequence = message.metadata.streamSequence
        timestampNs = message.metadata.timestampNs
        delivery = message
        self.content = content
    }

    init(_ stored: JetStream.StoredMessage, content: Content) {
        subject = stored.subject
        payload = stored.payload
        streamSequence = stored.sequence
        timestampNs = stored.timestampNs
        delivery = nil
        self.content = content
    }
}

/// Exponential back-off between tries: `initial`, doubling, capped at `maximum`.
struct RetryBackoff {
    let initial: Duration
    let maximum: Duration
    private var current: Duration

    init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
        current = initial
    }

    mutating func next() -> Duration {
        defer { current = min(current * 2, maximum) }
        return current
    }

    mutating func reset() { current = initial }
}
