import Foundation
import Logging
import NATSClient
import RoutingCore
import ServiceSupport
import SwitchboardContracts
import SwitchboardProto

/// What an event pipeline does with one event: plans its recipients, encodes its deliveries,
/// dead-letters poison, acks; and the retry loop that takes over after a failure.
extension EventPipeline {
    enum Outcome {
        case delivered(Int)
        case poison(String)
        case failed(any Error)
    }

    /// What an event is, decided once when the pipeline first takes it: poison, or an event
    /// linked into its channel's chain.
    func take(subject: String, payload: [UInt8], seq: UInt64, chain: inout ChannelChain) -> PartitionEvent.Content {
        switch StoredEvent.examine(subject: subject, payload: payload, partitionCount: config.partitions.count) {
        case .poison(let reason):
            return .poison(reason)
        case .event(let event):
            return .event(event, prev: chain.link(channel: event.channelID, seq: seq))
        }
    }

    /// Plans `event` and adds its deliveries to `inboxes` (which publishes a message that
    /// reaches a bound); taken and poison events deliver nothing here.
    func outcome(of event: PartitionEvent, partition: Int, plan: inout PlanBuffer, into inboxes: inout InboxBatches) -> Outcome {
        switch event.content {
        case .taken: return .delivered(0)
        case .poison(let reason): return .poison(reason)
        case .event(let chatEvent, let prev): return handle(event, chatEvent, prev: prev, partition: partition, plan: &plan, into: &inboxes)
        }
    }

    private func handle(_ message: PartitionEvent, _ event: ChatEvent, prev: UInt64, partition: Int, plan: inout PlanBuffer, into inboxes: inout InboxBatches) -> Outcome {
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

    /// Delivers and acks one partition's `batch` in order, one delivery per inbox message,
    /// flushing each try and retrying from its first unflushed event until every event is
    /// flushed or dead-lettered. Ends early, with the unflushed rest left unacked, when asked
    /// to stop or when the partition's lease runs out; returns how it ended and how many
    /// leading events were acked.
    func deliver(_ batch: [PartitionEvent], partition: Int, epoch: String, plan: inout PlanBuffer, stop: StopSignal) -> (end: RetryEnd, acked: Int) {
        var start = 0
        var tries = 0
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        var reported = ContinuousClock.now
        while start < batch.count {
            leases.turning(partitions)
            guard leases.grant(partition) != nil else {
                logger.warning("partition lease ran out during a retry; its next holder delivers the rest", metadata: ["partition": "\(partition)", "events": "\(batch.count - start)"])
                return (.leaseLost, start)
            }
            let (done, failure) = attempt(batch[start...], partition: partition, epoch: epoch, plan: &plan)
            if done > 0 {
                acknowledge(batch[start..<(start + done)], partition: partition, epoch: epoch)
                start += done
                tries = 0
                backoff.reset()
            }
            guard let failure, start < batch.count else { continue }
            tries += 1
            metrics.retries.increment()
            let event = batch[start]
            if tries >= Self.maxTries, deadLetter(event, partition: partition, reason: "\(failure) (after \(tries) tries)") {
                acknowledge(batch[start...start], partition: partition, epoch: epoch)
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
                return (.stopped, start)
            }
            keepHeld(batch[start...], reported: &reported)
        }
        return (.done, start)
    }

    enum RetryEnd { case done, stopped, leaseLost }

    /// One try at `events`: publishes their deliveries in order, one per message, up to the
    /// first failure, then flushes. Returns how many leading events are done (flushed,
    /// dead-lettered or without recipients) and the failure that stopped the rest, if any.
    /// A failed flush leaves none done: which deliveries reached the server is unknown.
    private func attempt(_ events: ArraySlice<PartitionEvent>, partition: Int, epoch: String, plan: inout PlanBuffer) -> (done: Int, failure: String?) {
        var inboxes = InboxBatches(epoch: epoch, maxDeliveries: 1, maxBytes: config.inboxBatchBytes)
        var handled = 0
        var published = 0
        var failure: String?
        for event in events {
            switch outcome(of: event, partition: partition, plan: &plan, into: &inboxes) {
            case .delivered(let count):
                published += count
            case .poison(let reason):
                if !deadLetter(event, partition: partition, reason: reason) { failure = "dead-letter publish failed for: \(reason)" }
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

    /// Acks `events` that are done with one ack-all: of the delivery with the highest stream
    /// sequence among them (events read from the stream after a gap have none of their own;
    /// a later delivery's ack covers them). The confirmed position goes on the lease board,
    /// for the lease entry.
    func acknowledge(_ events: ArraySlice<PartitionEvent>, partition: Int, epoch: String) {
        let newest = events.lazy.compactMap(\.delivery).max { $0.metadata.streamSequence < $1.metadata.streamSequence }
        if let newest {
            do {
                try feed.ack(newest)
                leases.confirmed(partition, consumer: newest.metadata.consumer, through: newest.metadata.streamSequence, epoch: epoch)
            } catch { metrics.ackErrors.increment() }
        }
        metrics.eventsAcked.increment(by: events.count)
    }

    /// Once a retry has held events for a third of the ack wait, tells the server they are
    /// still in progress, so that it does not redeliver them behind the pipeline's back.
    private func keepHeld(_ events: ArraySlice<PartitionEvent>, reported: inout ContinuousClock.Instant) {
        guard ContinuousClock.now - reported >= config.ackWait / 3 else { return }
        for event in events { if let delivery = event.delivery { try? feed.inProgress(delivery) } }
        reported = .now
    }

    /// Stores the event in `CHAT_DLQ` with the reason (nothing is lost); it is acked with the
    /// events around it. False when the DLQ publish failed: the event must then be retried.
    func deadLetter(_ message: PartitionEvent, partition: Int, reason: String) -> Bool {
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
