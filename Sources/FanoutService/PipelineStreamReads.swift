import Foundation
import Logging
import NATSClient
import ServiceSupport
import SwitchboardContracts
import SwitchboardProto

/// What an event pipeline reads from `CHAT_EVENTS` itself rather than through its consumers:
/// each partition's chain at start-up, events whose deliveries went missing, and the stream's
/// state when a consumer is gone.
extension EventPipeline {
    /// Links the partition's events after `chainThrough` up to the consumer's ack floor into
    /// `chain` (which holds everything up to `chainThrough`) and moves `chainThrough` to the
    /// floor; the events after the floor come through the consumer and are linked as they are
    /// taken. At a takeover from a warm standby this is a short tail; from a cold one, one read
    /// of the partition's stored events (logged with its time). False when asked to stop first;
    /// read failures are retried with back-off from where the read got to.
    func extendChain(_ chain: inout ChannelChain, through chainThrough: inout UInt64, partition: Int, to ackFloor: UInt64, stop: StopSignal) -> Bool {
        guard ackFloor > chainThrough else { return true }
        let started = ContinuousClock.now
        let from = chainThrough
        let partitionCount = config.partitions.count
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        var events = 0
        while !stop.isRaised {
            do {
                // An ordered consumer waits out its read timeout when nothing is there to read.
                guard let first = try jetStream.nextMessage(stream: StreamNames.events, matching: Subjects.events(partition: partition), atOrAfter: chainThrough + 1),
                      first.sequence <= ackFloor else {
                    chainThrough = ackFloor
                    return true
                }
                let consumer = try jetStream.orderedConsumer(stream: StreamNames.events, filterSubject: Subjects.events(partition: partition), startSequence: first.sequence, createTimeout: .seconds(30))
                defer { consumer.close() }
                var done = false
                while !done && !stop.isRaised {
                    leases.turning(partitions)
                    let read = try consumer.read(limit: 1024, timeout: .seconds(1)) { message in
                        guard !done, message.streamSequence <= ackFloor else { done = true; return }
                        let subject = String(decoding: message.subject, as: UTF8.self)
                        if case .event(let event) = StoredEvent.examine(subject: subject, payload: message.payload, partitionCount: partitionCount) {
                            _ = chain.link(channel: event.channelID, seq: message.streamSequence)
                        }
                        chainThrough = message.streamSequence
                        events += 1
                        if message.streamSequence == ackFloor || message.numPending == 0 { done = true }
                    }
                    if read == 0 { done = true }  // nothing stored up to the floor (purged)
                }
                guard !stop.isRaised else { return false }
                chainThrough = ackFloor
                logger.info("channel chain read from the stream", metadata: [
                    "partition": "\(partition)", "after_seq": "\(from)", "through_seq": "\(ackFloor)", "events": "\(events)",
                    "channels": "\(chain.channelCount)", "ms": "\((ContinuousClock.now - started).milliseconds)",
                ])
                return true
            } catch {
                logger.warning("reading the channel chain failed; retrying", metadata: ["partition": "\(partition)", "from_seq": "\(chainThrough)", "error": "\(error)"])
                if stop.pause(backoff.next()) { return false }
            }
        }
        return false
    }

    /// Reads and takes the partition's events from `from` up to `before` (nil: the newest),
    /// at most `limit` of them: deliveries of them went missing on the way. Read failures are
    /// retried with back-off; nil when asked to stop.
    func readFromStream(_ cursor: inout PartitionCursor, from: UInt64, before: UInt64?, limit: Int, stop: StopSignal) -> (events: [PartitionEvent], reachedNewest: Bool)? {
        logger.warning("deliveries went missing on the way; reading the partition from the stream", metadata: [
            "partition": "\(cursor.partition)", "from_seq": "\(from)", "before_seq": "\(before.map(String.init) ?? "newest")",
        ])
        metrics.gapsFilled.increment()
        var next = from
        var events: [PartitionEvent] = []
        var backoff = RetryBackoff(initial: config.retryBackoff, maximum: config.retryBackoffMax)
        while events.count < limit, before.map({ next < $0 }) ?? true {
            let stored: JetStream.StoredMessage?
            do {
                stored = try jetStream.nextMessage(stream: StreamNames.events, matching: Subjects.events(partition: cursor.partition), atOrAfter: next)
            } catch {
                logger.warning("reading a missed event failed; retrying", metadata: ["partition": "\(cursor.partition)", "from_seq": "\(next)", "error": "\(error)"])
                if stop.pause(backoff.next()) { return nil }
                continue
            }
            backoff.reset()
            guard let stored, before.map({ stored.sequence < $0 }) ?? true else { return (events, true) }
            events.append(PartitionEvent(stored, content: take(subject: stored.subject, payload: stored.payload, seq: stored.sequence, chain: &cursor.chain)))
            cursor.continuity.tookFromStream(stored.sequence)
            metrics.eventsReadAfterGap.increment()
            next = stored.sequence + 1
        }
        return (events, before != nil)
    }

    /// For each partition whose consumer is gone, at once and then every 200 ms: when `CHAT_EVENTS` was
    /// deleted and created anew (its epoch changed), binds a consumer on the new stream (whose
    /// numbering starts again, with a new chain); when only the consumer was deleted, creates
    /// it again to deliver after what was taken. Until then the partition gets no requests.
    func rebindMissing(_ hand: inout Hand) {
        let now = ContinuousClock.now
        for index in hand.cursors.indices {
            guard let due = hand.cursors[index].recheckAt, now >= due, let term = hand.cursors[index].term,
                  leases.grant(hand.cursors[index].partition)?.consumer == term else { continue }
            hand.cursors[index].recheckAt = now + .milliseconds(200)
            let cursor = hand.cursors[index]
            guard let created = try? jetStream.streamState(StreamNames.events).createdNs else { continue }
            let epoch = StreamEpoch.of(createdNs: created)
            let anew = epoch != cursor.epoch
            let taken = cursor.continuity.takenThrough
            guard let start = try? Self.bind(jetStream, partition: cursor.partition, consumer: term, config: config, startAfter: anew ? nil : taken) else { continue }
            if anew {
                hand.cursors[index].chain = ChannelChain()
                hand.cursors[index].chainThrough = 0
                hand.cursors[index].activate(term: term, start: start, epoch: epoch)
                metrics.streamsCreatedAnew.increment()
                logger.notice("CHAT_EVENTS was created anew: consuming the new stream", metadata: [
                    "partition": "\(cursor.partition)", "epoch_from": "\(cursor.epoch)", "epoch_to": "\(epoch)",
                ])
            } else {
                hand.cursors[index].recheckAt = nil
                logger.warning("consumer created again", metadata: ["partition": "\(cursor.partition)", "after_seq": "\(taken)"])
            }
            feed.restart(cursor.consumer)
        }
    }
}
