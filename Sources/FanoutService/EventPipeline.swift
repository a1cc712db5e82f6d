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
/// end, and never naks, so every pending sequence below an ack it sends is one it has flushed
/// or dead-lettered. A redelivery (an ack lost, an ack wait expired) is delivered again, with
/// the same `stream_seq`, before it is acked again.
final class EventPipeline: Service {
    /// Failed tries in a row after which an event goes to the DLQ instead of being retried.
    static let maxTries = 10

    let partition: Int
    private let output: any PipelineOutput
    private let subscription: PullSubscription
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
        subscription = try jetStream.pullSubscribe(
            stream: StreamNames.events, durable: ConsumerNames.fanout(partition: partition), filterSubject: Subjects.events(partition: partition),
            ackWait: config.ackWait, maxAckPending: 20_000, ackPolicy: .all, restartAtAckFloor: true
        )
    }

    func run() async {
        await DedicatedThread.run(name: "pipeline-p\(partition)") { [self] stop in
            consume(until: stop)
            subscription.unsubscribe()
        }
    }

    private func consume(until stop: StopSignal) {
        var batch: [JetStreamMessage] = []
        /// Planner output, reused for every event.
        var plan = PlanBuffer()
        while !stop.isRaised {
            do {
                batch = try subscription.fetch(batch: config.fetchBatch, timeout: .milliseconds(500))
            } catch {
                logger.warning("fetch failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
                metrics.fetchErrors.increment()
                stop.pause(.milliseconds(200))
                continue
            }
            if batch.isEmpty { continue }
            metrics.fetchBatch.record(batch.count)
            metrics.eventsIn.increment(by: batch.count)
            if let last = batch.last { lag.store(last.metadata.numPending, ordering: .relaxed) }
            metrics.setLag(partition: partition, lag.load(ordering: .relaxed))
            guard deliver(batch, plan: &plan, stop: stop) else { return }
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// Delivers and acks `batch` in order, retrying from its first unflushed event until every
    /// event is flushed or dead-lettered. False when asked to stop during a retry: the
    /// unflushed rest is left unacked.
    private func deliver(_ batch: [JetStreamMessage], plan: inout PlanBuffer, stop: StopSignal) -> Bool {
        var start = 0
        var tries = 0
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        var reported = ContinuousClock.now
        while start < batch.count {
            let (done, failure) = attempt(batch[start...], plan: &plan)
            if done > 0 {
                acknowledge(batch[start + done - 1], events: done)
                start += done
                tries = 0
                backoff.reset()
            }
            guard let failure, start < batch.count else { continue }
            tries += 1
            metrics.retries.increment()
            let message = batch[start]
            if tries >= Self.maxTries, deadLetter(message, reason: "\(failure) (after \(tries) tries)") {
                acknowledge(message, events: 1)
                start += 1
                tries = 0
                backoff.reset()
                continue
            }
            logger.warning("delivery failed; retrying in order", metadata: [
                "partition": "\(partition)", "stream_seq": "\(message.metadata.streamSequence)",
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

    /// One try at `events`: publishes them in order up to the first failure, then flushes.
    /// Returns how many leading events are done (flushed, dead-lettered or without
    /// recipients) and the failure that stopped the rest, if any. A failed flush leaves none
    /// done: which of the published deliveries reached the server is unknown.
    private func attempt(_ events: ArraySlice<JetStreamMessage>, plan: inout PlanBuffer) -> (done: Int, failure: String?) {
        var handled = 0
        var published = 0
        var failure: String?
        for message in events {
            switch handle(message, plan: &plan) {
            case .delivered(let count):
                published += count
            case .poison(let reason):
                if !deadLetter(message, reason: reason) { failure = "dead-letter publish failed for: \(reason)" }
            case .failed(let error):
                failure = "publish failed: \(error)"
            }
            if failure != nil { break }
            handled += 1
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

    /// Acks `message` and with it (ack-all) every earlier event of the batch.
    private func acknowledge(_ message: JetStreamMessage, events: Int) {
        do { try message.ack() } catch { metrics.ackErrors.increment() }
        metrics.eventsAcked.increment(by: events)
    }

    /// Once a retry has held events for a third of the ack wait, tells the server they are
    /// still in progress, so that it does not redeliver them behind the pipeline's back.
    private func keepHeld(_ events: ArraySlice<JetStreamMessage>, reported: inout ContinuousClock.Instant) {
        guard ContinuousClock.now - reported >= config.ackWait / 3 else { return }
        for message in events { try? message.inProgress() }
        reported = .now
    }

    private enum Outcome {
        case delivered(Int)
        case poison(String)
        case failed(any Error)
    }

    private func handle(_ message: JetStreamMessage, plan: inout PlanBuffer) -> Outcome {
        let event: ChatEvent
        do {
            event = try ChatEvent(decoding: message.payload)
        } catch {
            return .poison("undecodable ChatEvent: \(error)")
        }
        guard Identifier.isValid(event.channelID) else { return .poison("invalid channel_id '\(event.channelID.prefix(80))'") }
        guard Identifier.isValid(event.senderID) else { return .poison("invalid sender_id '\(event.senderID.prefix(80))'") }
        guard message.subject == Subjects.event(channel: event.channelID, partitionCount: config.partitions.count) else {
            return .poison("channel_id \(event.channelID) does not match subject \(message.subject)")
        }
        let started = ContinuousClock.now
        let recipients = state.plan(partition: partition, channel: event.channelID, skipUser: event.skipSenderEcho ? event.senderID : nil, into: &plan)
        metrics.planning.recordNanoseconds(Int64((ContinuousClock.now - started).nanoseconds))
        metrics.recipients.increment(by: recipients)
        if plan.targets.isEmpty {
            metrics.eventsWithoutRecipients.increment()
            return .delivered(0)
        }
        let sequence = message.metadata.streamSequence
        do {
            try message.payload.withUnsafeBytes { eventBytes in
                for index in 0..<plan.targets.count {
                    let bytes = plan.slots[index].withUnsafeBufferPointer { slots in
                        Delivery.encode(streamSeq: sequence, channelID: event.channelID, event: eventBytes, slots: slots)
                    }
                    try output.publish(plan.targets[index].inboxSubject, payload: bytes)
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
    private func deadLetter(_ message: JetStreamMessage, reason: String) -> Bool {
        var headers = NATSHeaders()
        headers[HeaderNames.reason] = reason
        headers[HeaderNames.subject] = message.subject
        headers[HeaderNames.streamSequence] = "\(message.metadata.streamSequence)"
        do {
            try output.deadLetter(Subjects.deadLetter(partition: partition), payload: message.payload, headers: headers, msgID: "\(StreamNames.events)-\(message.metadata.streamSequence)-\(message.metadata.timestampNs)")
        } catch {
            logger.error("dead-letter publish failed; event kept for a retry", metadata: ["partition": "\(partition)", "error": "\(error)"])
            return false
        }
        metrics.deadLettered.increment()
        logger.error("event dead-lettered", metadata: [
            "partition": "\(partition)", "subject": "\(message.subject)",
            "stream_seq": "\(message.metadata.streamSequence)", "reason": "\(reason)",
        ])
        return true
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
