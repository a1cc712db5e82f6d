/// Tells a partition pipeline which deliveries of its consumer carry events it has not taken
/// yet, and when deliveries went missing on the way.
///
/// Why it is needed: an ack-all of stream sequence S acks every pending sequence at or below
/// S. A delivery the server sent but the pipeline never received (a NATS node died with it in
/// its buffers; another client pulled from the same durable) stays pending, and the next ack
/// would ack it unseen. The consumer numbers its deliveries (`consumer_seq`, one more per
/// delivery, redeliveries included), so a jump shows that some were lost, though not which
/// events they carried: every event of the partition after the last one taken and before the
/// next new one must then be read from the stream and handled first. Redeliveries of events
/// already taken (an ack lost, an ack wait expired) are acked, not delivered again.
///
/// Pure state, no I/O; one per partition (`PartitionCursor`), used from its pipeline's thread only.
struct ConsumerContinuity: Equatable {
    /// Every event of the partition at or below this stream sequence has been taken: handled,
    /// or in hand until it is (the pipeline never drops an event it took).
    private(set) var takenThrough: UInt64
    private var lastConsumerSequence: UInt64
    /// Deliveries went missing since the partition was last read up to date.
    private(set) var gapOpen = false

    /// `takenThrough` is the consumer's ack floor when the pipeline starts (its consumer
    /// then delivers from just past it, numbering deliveries from 1).
    init(takenThrough: UInt64, lastConsumerSequence: UInt64 = 0) {
        self.takenThrough = takenThrough
        self.lastConsumerSequence = lastConsumerSequence
    }

    enum Verdict: Equatable {
        /// An event taken before: ack it, deliver nothing.
        case taken
        /// The next event: take it.
        case next
        /// Deliveries went missing: read the partition's events in `missed` (stream
        /// sequences) from the stream and take them, then this one.
        case afterGap(missed: ClosedRange<UInt64>)
    }

    /// What to do with a delivery; called once per delivery, in the order they arrive.
    /// `firstDelivery` (its `num_delivered` is 1) closes a gap: the server delivers new
    /// events in stream order, so whatever went missing before it lies below it, while a
    /// redelivery may come before a missing one of a later event.
    mutating func admit(streamSequence: UInt64, consumerSequence: UInt64, firstDelivery: Bool) -> Verdict {
        if consumerSequence > lastConsumerSequence + 1 { gapOpen = true }
        lastConsumerSequence = max(lastConsumerSequence, consumerSequence)
        guard streamSequence > takenThrough else { return .taken }
        defer { takenThrough = streamSequence }
        guard gapOpen else { return .next }
        if firstDelivery { gapOpen = false }
        if streamSequence == takenThrough + 1 { return .next }
        return .afterGap(missed: (takenThrough + 1)...(streamSequence - 1))
    }

    /// Where to start reading the stream when deliveries went missing and none came since
    /// (nil when none went missing): the missing ones may be the newest events.
    var idleGapStart: UInt64? { gapOpen ? takenThrough + 1 : nil }

    /// An event read from the stream (after a gap) was taken.
    mutating func tookFromStream(_ streamSequence: UInt64) {
        takenThrough = max(takenThrough, streamSequence)
    }

    /// The partition was read up to date after a gap with no delivery since.
    mutating func closeIdleGap() { gapOpen = false }
}
