import NATSClient
import SwitchboardProto

/// One partition's place in an event pipeline: whether this replica delivers it (holds its
/// lease) or stands by, its consumer, where the consumer's deliveries stand, the partition's
/// channel chain, and what was published but not yet confirmed. Used from the pipeline's
/// thread only.
struct PartitionCursor {
    let partition: Int
    /// The partition's slot in the pipeline's `PullFeed`.
    let consumer: Int
    /// `CHAT_EVENTS`' epoch (`StreamEpoch`) the consumer is bound on.
    var epoch: String
    /// The consumer of the lease term being delivered; nil while standing by.
    var term: String?
    var continuity: ConsumerContinuity
    var chain: ChannelChain
    /// The chain holds every event of the partition up to here and none after (standing by;
    /// while delivering, `continuity.takenThrough` says it).
    var chainThrough: UInt64 = 0
    /// Keeps the chain warm while standing by.
    var follower: ChainFollower?
    /// When the follower may be opened again after it failed.
    var followAgainAt: ContinuousClock.Instant = .now
    /// Published in stream order and waiting for the flush that confirms them; acked then.
    var unconfirmed: [PartitionEvent] = []
    /// The newest event confirmed (acked or covered by an ack) in this term.
    var confirmedThrough: UInt64 = 0
    /// The consumer is gone (the server said so): when the pipeline next looks whether the
    /// stream was created anew or the consumer must be created again.
    var recheckAt: ContinuousClock.Instant?
    /// Messages not yet consumed, from the last delivery.
    var lag: UInt64 = 0

    /// A partition standing by, with an empty chain.
    init(partition: Int, consumer: Int, epoch: String) {
        self.partition = partition
        self.consumer = consumer
        self.epoch = epoch
        continuity = ConsumerContinuity(takenThrough: 0, lastConsumerSequence: 0)
        chain = ChannelChain()
    }

    /// Starts delivering through `term`'s consumer, bound at `start`; the chain stands at its ack floor.
    mutating func activate(term: String, start: PullSubscription.Start, epoch: String) {
        follower?.close()
        follower = nil
        self.term = term
        self.epoch = epoch
        continuity = Self.continuity(from: start)
        confirmedThrough = start.ackFloor
        unconfirmed.removeAll()
        recheckAt = nil
    }

    /// Lends the chain and its position to `body` in place (an array element's two properties
    /// cannot be passed `inout` side by side, and a copy would copy the chain's storage).
    mutating func withChain<T>(_ body: (inout ChannelChain, inout UInt64) throws -> T) rethrows -> T {
        try body(&chain, &chainThrough)
    }

    /// `events` (the oldest unconfirmed ones) were confirmed.
    mutating func confirmed(_ events: ArraySlice<PartitionEvent>) {
        if let newest = events.last?.streamSequence { confirmedThrough = max(confirmedThrough, newest) }
    }

    /// Stops delivering: what is unconfirmed stays unacked (the next holder delivers it again),
    /// and is unlinked from the chain, newest first, so that the chain stands where the
    /// partition was confirmed — where the next term resumes, even when it is this replica's again.
    mutating func standBy() {
        for event in unconfirmed.reversed() where event.streamSequence > confirmedThrough {
            if case .event(let chatEvent, let prev) = event.content { chain.unlink(channel: chatEvent.channelID, seq: event.streamSequence, prev: prev) }
        }
        chainThrough = confirmedThrough
        term = nil
        unconfirmed.removeAll()
        recheckAt = nil
    }

    /// Where a term this replica takes over starts, given `floor` (the larger of the previous
    /// term's lease entry position and its consumers' ack floors): after this cursor's chain
    /// when the term replaced was this process's own in the same stream, since what the chain
    /// holds was confirmed here (flushed; `standBy` unlinked the rest), though the acks of the
    /// newest may have been lost with a connection. Otherwise a chain ahead of the floor would
    /// be read again from the stream, stopping the pipeline's every partition for as long as
    /// JetStream takes to answer — and a lease lapses exactly when a NATS node just died.
    func termStart(floor: UInt64, replacedProcess: String?, ownProcess: String, epoch: String) -> UInt64 {
        guard term == nil, replacedProcess == ownProcess, epoch == self.epoch else { return floor }
        return max(floor, chainThrough)
    }

    /// What a consumer that was just bound tells: everything up to its ack floor was taken,
    /// and it numbers deliveries on from where it stands.
    static func continuity(from start: PullSubscription.Start) -> ConsumerContinuity {
        ConsumerContinuity(takenThrough: start.ackFloor, lastConsumerSequence: start.lastConsumerSequence)
    }
}

/// An event in a pipeline's hands: delivered by its consumer, or read from the stream after
/// deliveries went missing (then without a delivery of its own to ack).
struct PartitionEvent {
    let subject: String
    let payload: [UInt8]
    let streamSequence: UInt64
    let timestampNs: Int64
    let delivery: PullFeed.Message?
    let content: Content

    enum Content {
        /// Handled before (this is a redelivery): acked with the rest, not delivered again.
        case taken
        /// Dead-lettered with this reason; not in its channel's chain.
        case poison(String)
        /// Delivered; `prev` is the channel's previous event (`ChannelChain`).
        case event(ChatEvent, prev: UInt64)
    }

    init(_ message: PullFeed.Message, content: Content) {
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
