import Foundation
import Logging
import NATSClient
import ServiceSupport
import SwitchboardContracts

/// How an event pipeline follows the lease board: a partition whose lease this replica gained
/// is taken over where the previous term stopped, one whose lease it lost stands by, and every
/// standby partition's chain is kept warm up to where its holder has confirmed.
extension EventPipeline {
    /// How often a pipeline with standby partitions looks at the board.
    static let standbyLook: Duration = .milliseconds(50)
    /// The longest a pipeline delivering all its partitions goes without looking at every
    /// grant, even when the board says nothing changed.
    static let boardLook: Duration = .milliseconds(100)
    /// How often a pipeline tells the board it is turning (the keeper's stall check counts in
    /// tens of seconds).
    static let turningPostEvery: Duration = .milliseconds(100)

    /// Brings every partition in line with the board. False when asked to stop.
    /// Records in `hand.leasesLooked` until when that holds if the board does not change.
    func takeUpLeases(_ hand: inout Hand, stop: StopSignal) -> Bool {
        // Read before the grants: a post racing with this look makes the next turn look again.
        let changes = leases.changes
        let now = ContinuousClock.now
        var holdsUntil = now + Self.boardLook
        for index in hand.cursors.indices {
            let grant = leases.grant(hand.cursors[index].partition, at: now)
            if let term = hand.cursors[index].term, grant?.consumer != term {
                standBy(index, &hand, reason: grant == nil ? "its lease ran out or went to another replica" : "a new term of its lease began")
            }
            if hand.cursors[index].term == nil, let grant {
                guard takeOver(index, grant: grant, hand: &hand, stop: stop) else { return false }
            }
            if let grant, hand.cursors[index].term == grant.consumer { holdsUntil = min(holdsUntil, grant.validUntil) }
        }
        if hand.cursors.contains(where: { $0.term == nil }) {
            let anyActive = hand.cursors.contains { $0.term != nil }
            followStandbys(&hand, budget: anyActive ? .milliseconds(5) : .milliseconds(100))
            // A standby's chain is followed, and its lease may come, at any turn.
            hand.leasesLooked = nil
        } else {
            hand.leasesLooked = (changes, holdsUntil)
        }
        return !stop.isRaised
    }

    /// The partition is no longer this replica's to deliver: its slot sends no more requests
    /// and what is unconfirmed stays unacked (the next holder delivers it again, same seq and prev).
    func standBy(_ index: Int, _ hand: inout Hand, reason: String) {
        let cursor = hand.cursors[index]
        guard cursor.term != nil else { return }
        feed.pause(cursor.consumer)
        hand.cursors[index].standBy()
        hand.leasesLooked = nil
        leases.delivering(cursor.partition, false)
        logger.warning("partition standing by: not delivering it", metadata: [
            "partition": "\(cursor.partition)", "reason": "\(reason)", "unconfirmed_left": "\(cursor.unconfirmed.count)",
            "taken_through": "\(cursor.continuity.takenThrough)",
        ])
    }

    /// Starts delivering under `grant`: finds where the previous term stopped (the larger of
    /// its consumer's ack floor and the position its lease entry names), brings the chain
    /// there, creates the term's consumer to deliver from just after it — so what the previous
    /// holder took but did not confirm comes first, in order — and deletes the previous
    /// consumers. A failure leaves the partition standing by until the next look. False when
    /// asked to stop.
    func takeOver(_ index: Int, grant: LeaseBoard.Grant, hand: inout Hand, stop: StopSignal) -> Bool {
        let started = ContinuousClock.now
        let partition = hand.cursors[index].partition
        // The consumer of the deployment before leases, and the previous term's.
        let previous = [ConsumerNames.fanout(partition: partition), grant.replaced?.consumer].compactMap { $0 }.filter { $0 != grant.consumer }
        do {
            let epoch = StreamEpoch.of(createdNs: try jetStream.streamState(StreamNames.events).createdNs)
            // The previous entry's position counts only in the stream it was written for.
            var floor = grant.replaced.flatMap { $0.epoch == epoch ? $0.acked : nil } ?? 0
            for name in previous { floor = max(floor, try jetStream.consumerAckFloor(stream: StreamNames.events, durable: name) ?? 0) }
            // The term's consumer exists already only when its name was used before (a pipeline
            // under the plain name, restarted): it resumes past the floor like a new one.
            if let own = try jetStream.consumerAckFloor(stream: StreamNames.events, durable: grant.consumer) {
                if own < floor { try jetStream.deleteConsumer(stream: StreamNames.events, durable: grant.consumer) }
                floor = max(floor, own)
            }
            floor = hand.cursors[index].termStart(floor: floor, replacedProcess: grant.replaced?.process, ownProcess: leases.process, epoch: epoch)
            hand.cursors[index].follower?.close()
            hand.cursors[index].follower = nil
            if epoch != hand.cursors[index].epoch || hand.cursors[index].chainThrough > floor {
                // A chain ahead of the floor (this replica was the holder and went further) or
                // of another stream is read again from the start.
                hand.cursors[index].chain = ChannelChain()
                hand.cursors[index].chainThrough = 0
            }
            let extended = hand.cursors[index].withChain { chain, through in
                extendChain(&chain, through: &through, partition: partition, to: floor, stop: stop)
            }
            guard extended else { return false }
            // The lease may have gone while the chain was read.
            guard leases.grant(partition)?.consumer == grant.consumer else { return true }
            let start = try Self.bind(jetStream, partition: partition, consumer: grant.consumer, config: config, startAfter: floor)
            for name in previous { _ = try? jetStream.deleteConsumer(stream: StreamNames.events, durable: name) }
            hand.cursors[index].activate(term: grant.consumer, start: start, epoch: epoch)
            try feed.restart(hand.cursors[index].consumer, consumer: grant.consumer)
            leases.delivering(partition, true)
            logger.notice("partition taken over: delivering it", metadata: [
                "partition": "\(partition)", "consumer": "\(grant.consumer)", "after_seq": "\(start.ackFloor)",
                "from": "\(grant.replaced.map { "\($0.replica) (\($0.process))" } ?? "none")", "ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
        } catch {
            logger.warning("taking a partition over failed; retrying", metadata: ["partition": "\(partition)", "error": "\(error)"])
            metrics.fetchErrors.increment()
        }
        return true
    }

    /// Links what each standby partition's holder has confirmed into its chain, within `budget`
    /// per partition. A follower that fails is opened again a second later.
    func followStandbys(_ hand: inout Hand, budget: Duration) {
        let now = ContinuousClock.now
        for index in hand.cursors.indices where hand.cursors[index].term == nil {
            let partition = hand.cursors[index].partition
            guard let holder = leases.holderConfirmed(partition), holder.epoch == hand.cursors[index].epoch,
                  holder.seq > hand.cursors[index].chainThrough else { continue }
            let confirmed = holder.seq
            do {
                if hand.cursors[index].follower == nil {
                    guard now >= hand.cursors[index].followAgainAt else { continue }
                    hand.cursors[index].follower = try ChainFollower(jetStream: jetStream, partition: partition, after: hand.cursors[index].chainThrough, partitionCount: config.partitions.count)
                }
                guard let follower = hand.cursors[index].follower else { continue }
                try hand.cursors[index].withChain { chain, through in
                    try follower.advance(chain: &chain, through: &through, confirmed: confirmed, budget: budget)
                }
            } catch {
                hand.cursors[index].follower?.close()
                hand.cursors[index].follower = nil
                hand.cursors[index].followAgainAt = now + .seconds(1)
                logger.warning("following a standby partition's chain failed; opening it again", metadata: ["partition": "\(partition)", "error": "\(error)"])
            }
        }
    }
}
