import Testing
@testable import FanoutService

/// The pure bookkeeping that keeps an ack-all consumer from acking deliveries it never saw.
struct ConsumerContinuityTests {
    @Test func contiguousDeliveriesAreTakenInTurnAndRedeliveriesOfTakenEventsAreNot() {
        var continuity = ConsumerContinuity(takenThrough: 10)
        #expect(continuity.admit(streamSequence: 11, consumerSequence: 1, firstDelivery: true) == .next)
        #expect(continuity.admit(streamSequence: 14, consumerSequence: 2, firstDelivery: true) == .next)  // other partitions' sequences between
        #expect(continuity.admit(streamSequence: 11, consumerSequence: 3, firstDelivery: false) == .taken)
        #expect(continuity.admit(streamSequence: 9, consumerSequence: 4, firstDelivery: false) == .taken)
        #expect(continuity.takenThrough == 14)
        #expect(continuity.idleGapStart == nil)
    }

    @Test func aJumpInDeliveryNumbersMakesTheStreamRangeBeforeTheNextNewEventBeReadFirst() {
        var continuity = ConsumerContinuity(takenThrough: 10)
        #expect(continuity.admit(streamSequence: 12, consumerSequence: 1, firstDelivery: true) == .next)
        // Deliveries 2 and 3 never arrived.
        #expect(continuity.admit(streamSequence: 20, consumerSequence: 4, firstDelivery: true) == .afterGap(missed: 13...19))
        #expect(continuity.gapOpen == false)
        #expect(continuity.admit(streamSequence: 21, consumerSequence: 5, firstDelivery: true) == .next)
    }

    @Test func aGapStaysOpenAcrossRedeliveriesBecauseAMissingDeliveryMayBeOfALaterEvent() {
        var continuity = ConsumerContinuity(takenThrough: 10)
        #expect(continuity.admit(streamSequence: 11, consumerSequence: 1, firstDelivery: true) == .next)
        // Deliveries 2 and 3 (say of 12 and 13) went missing; 12 comes again first.
        #expect(continuity.admit(streamSequence: 12, consumerSequence: 4, firstDelivery: false) == .next)
        #expect(continuity.gapOpen)
        #expect(continuity.idleGapStart == 13)
        // The next new event closes it, after reading what lies between.
        #expect(continuity.admit(streamSequence: 15, consumerSequence: 5, firstDelivery: true) == .afterGap(missed: 13...14))
        #expect(continuity.idleGapStart == nil)
    }

    @Test func aGapRightAfterWhatWasTakenNeedsNoRead() {
        var continuity = ConsumerContinuity(takenThrough: 10)
        #expect(continuity.admit(streamSequence: 11, consumerSequence: 3, firstDelivery: true) == .next)
        #expect(continuity.gapOpen == false)
    }

    @Test func aGapWithNothingDeliveredSinceIsReadFromJustPastWhatWasTakenAndThenClosed() {
        var continuity = ConsumerContinuity(takenThrough: 10, lastConsumerSequence: 7)
        #expect(continuity.admit(streamSequence: 8, consumerSequence: 9, firstDelivery: false) == .taken)
        #expect(continuity.idleGapStart == 11)
        continuity.tookFromStream(12)
        continuity.tookFromStream(11)
        #expect(continuity.takenThrough == 12)
        continuity.closeIdleGap()
        #expect(continuity.idleGapStart == nil)
        #expect(continuity.admit(streamSequence: 12, consumerSequence: 10, firstDelivery: true) == .taken)
        #expect(continuity.admit(streamSequence: 13, consumerSequence: 11, firstDelivery: true) == .next)
    }

    @Test func aRecreatedConsumerNumberingFromOneIsNoGap() {
        var continuity = ConsumerContinuity(takenThrough: 500)
        #expect(continuity.admit(streamSequence: 501, consumerSequence: 1, firstDelivery: true) == .next)
        #expect(continuity.gapOpen == false)
    }
}

/// Where a term a replica takes over starts (`PartitionCursor.termStart`).
struct TermStartTests {
    private static func standingBy(chainThrough: UInt64, epoch: String = "e1") -> PartitionCursor {
        var cursor = PartitionCursor(partition: 3, consumer: 0, epoch: epoch)
        cursor.chainThrough = chainThrough
        return cursor
    }

    @Test func itsOwnLapsedTermResumesAfterWhatItConfirmedThoughTheAcksWereLost() {
        // Confirmed through 40 here; the server's ack floor says 38 (the acks of 39 and 40 went
        // down with the connection): the chain is kept and the term starts after 40.
        #expect(Self.standingBy(chainThrough: 40).termStart(floor: 38, replacedProcess: "me", ownProcess: "me", epoch: "e1") == 40)
        #expect(Self.standingBy(chainThrough: 30).termStart(floor: 38, replacedProcess: "me", ownProcess: "me", epoch: "e1") == 38)
    }

    @Test func anotherHoldersTermAStreamCreatedAnewOrNoEntryStartAfterTheFloor() {
        #expect(Self.standingBy(chainThrough: 40).termStart(floor: 38, replacedProcess: "other", ownProcess: "me", epoch: "e1") == 38)
        #expect(Self.standingBy(chainThrough: 40).termStart(floor: 38, replacedProcess: nil, ownProcess: "me", epoch: "e1") == 38)
        #expect(Self.standingBy(chainThrough: 40).termStart(floor: 0, replacedProcess: "me", ownProcess: "me", epoch: "e2") == 0)
    }
}
