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
/// online recipient. On graceful shutdown the batch in hand is finished (flushed, then acked)
/// before the loop returns.
///
/// At-least-once: a batch's deliveries are flushed to the server before any of its events
/// is acked; if the flush fails, the events are nak'ed and come back. Poison events
/// (undecodable, invalid or mismatched ids) are copied to `CHAT_DLQ` with the reason and
/// terminated, so the partition keeps moving and nothing disappears silently.
final class EventPipeline: Service {
    /// After this many failed deliveries an event goes to the DLQ instead of coming back.
    static let maxDeliveries = 10

    let partition: Int
    private let connection: NATSConnection
    private let jetStream: JetStream
    private let subscription: PullSubscription
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let logger: Logger
    private let config: FanoutConfig
    /// Messages not yet consumed in this partition, from the last fetched message.
    let lag = Atomic<UInt64>(0)

    init(partition: Int, connection: NATSConnection, jetStream: JetStream, state: RoutingState, metrics: FanoutMetrics, config: FanoutConfig, logger: Logger) throws {
        self.partition = partition
        self.connection = connection
        self.jetStream = jetStream
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
            process(batch, plan: &plan)
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// Handles a batch strictly in order. The consumer acks with `AckPolicy.all`, so one
    /// ack of the last handled event covers the batch: it goes out only after the batch's
    /// deliveries are flushed. The first event that cannot be delivered stops the batch; it
    /// and everything after it come back (nak), so nothing is skipped.
    private func process(_ batch: [JetStreamMessage], plan: inout PlanBuffer) {
        metrics.fetchBatch.record(batch.count)
        var handled = 0
        var published = 0
        var failure: String?
        for message in batch {
            switch handle(message, plan: &plan) {
            case .delivered(let count):
                published += count
            case .poison(let reason):
                // Stored in the DLQ now; acked with the batch (a TERM here would ack earlier,
                // unflushed events too).
                guard deadLetter(message, reason: reason, terminate: false) else {
                    failure = "dead-letter publish failed"
                    break
                }
            case .failed(let error):
                failure = "publish failed: \(error)"
            }
            if failure != nil { break }
            handled += 1
        }
        if let last = batch.last { lag.store(last.metadata.numPending, ordering: .relaxed) }
        metrics.setLag(partition: partition, lag.load(ordering: .relaxed))
        if published > 0 {
            do {
                try connection.flush(timeout: config.flushTimeout)
            } catch {
                logger.warning("flush failed; events will be redelivered", metadata: ["partition": "\(partition)", "events": "\(handled)", "error": "\(error)"])
                metrics.flushErrors.increment()
                batch.forEach { try? $0.nak(delay: .milliseconds(250)) }
                return
            }
        }
        if handled > 0 {
            do { try batch[handled - 1].ack() } catch { metrics.ackErrors.increment() }
            metrics.eventsAcked.increment(by: handled)
        }
        guard let failure, handled < batch.count else { return }
        logger.warning("delivery failed; retrying the rest of the batch", metadata: ["partition": "\(partition)", "stream_seq": "\(batch[handled].metadata.streamSequence)", "reason": "\(failure)"])
        retryOrDeadLetter(batch[handled], reason: failure)
        batch[(handled + 1)...].forEach { try? $0.nak(delay: .milliseconds(250)) }
    }

    private enum Outcome {
        case delivered(Int)
        case poison(String)
        case failed(any Error)
    }

    private func handle(_ message: JetStreamMessage, plan: inout PlanBuffer) -> Outcome {
        metrics.eventsIn.increment()
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
                    try connection.publish(plan.targets[index].inboxSubject, payload: bytes)
                }
            }
        } catch {
            return .failed(error)
        }
        metrics.deliveries.increment(by: plan.targets.count)
        return .delivered(plan.targets.count)
    }

    private func retryOrDeadLetter(_ message: JetStreamMessage, reason: String) {
        if message.metadata.numDelivered >= UInt64(Self.maxDeliveries),
           deadLetter(message, reason: "\(reason) (after \(message.metadata.numDelivered) deliveries)", terminate: true) {
            return
        } else {
            try? message.nak(delay: .milliseconds(250))
        }
    }

    /// Keeps the poison event in `CHAT_DLQ` (stored, so nothing is lost); with `terminate`
    /// also ends its deliveries (only once every earlier event is acked). False when the
    /// DLQ publish failed: the event must then be retried, not dropped.
    private func deadLetter(_ message: JetStreamMessage, reason: String, terminate: Bool) -> Bool {
        metrics.deadLettered.increment()
        logger.error("event dead-lettered", metadata: [
            "partition": "\(partition)", "subject": "\(message.subject)",
            "stream_seq": "\(message.metadata.streamSequence)", "reason": "\(reason)",
        ])
        var headers = NATSHeaders()
        headers[HeaderNames.reason] = reason
        headers[HeaderNames.subject] = message.subject
        headers[HeaderNames.streamSequence] = "\(message.metadata.streamSequence)"
        do {
            _ = try jetStream.publish(Subjects.deadLetter(partition: partition), payload: message.payload, headers: headers)
            if terminate { try message.term() }
            return true
        } catch {
            logger.error("dead-letter publish failed; event left for redelivery", metadata: ["error": "\(error)"])
            return false
        }
    }
}
