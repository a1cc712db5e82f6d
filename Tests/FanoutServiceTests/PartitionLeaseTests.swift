import Foundation
import Logging
import NATSClient
import ServiceSupport
import SwitchboardContracts
import SwitchboardHarness
import Synchronization
import Testing
@testable import FanoutService

/// The lease state machine alone: what a replica decides from what it reads, by its own clock.
@Suite struct PartitionLeaseTests {
    let timing = LeaseTiming(takeoverAfter: .milliseconds(1_000))
    let t0 = ContinuousClock.now

    func record(_ process: String, released: Bool? = nil, acked: UInt64 = 0) -> [UInt8] {
        LeaseRecord(replica: "r-\(process)", process: process, consumer: "fanout-p3-\(process)-1", acked: acked, partitions: [3], released: released).encoded()
    }

    @Test func nothingIsDecidedBeforeTheStoreWasReadAndAMissingEntryIsAcquiredAtOnce() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        #expect(lease.due(at: t0) == nil)
        lease.observe(revision: 0, payload: nil, at: t0)
        #expect(lease.due(at: t0) == .acquire(expect: 0))
    }

    @Test func aHolderRenewsOnTimeAndDeliversOnlyUntilItsLastWriteIsHalfATakeoverOld() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        lease.observe(revision: 0, payload: nil, at: t0)
        let mine = LeaseRecord.decode(record("me"))!
        lease.wrote(.acquire(expect: 0), revision: 7, record: mine, sentAt: t0)
        #expect(lease.holds(at: t0 + .milliseconds(10))?.consumer == mine.consumer)
        #expect(lease.due(at: t0 + .milliseconds(100)) == nil)
        #expect(lease.due(at: t0 + timing.renewEvery) == .renew(expect: 7))
        // No renewal landed: the term ends on its own, before any observer may take over.
        #expect(lease.holds(at: t0 + timing.holdFor) == nil)
        #expect(timing.holdFor < timing.takeoverAfter)
        lease.wrote(.renew(expect: 7), revision: 9, record: mine, sentAt: t0 + .milliseconds(300))
        #expect(lease.holds(at: t0 + .milliseconds(700)) != nil)
        #expect(lease.due(at: t0 + .milliseconds(700)) == .renew(expect: 9))
    }

    @Test func anotherHoldersEntryIsTakenOverOnlyAfterItStoppedChangingForTheTakeoverTime() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        lease.observe(revision: 4, payload: record("other"), at: t0)
        #expect(lease.due(at: t0 + .milliseconds(999)) == nil)
        // A renewal seen restarts the clock.
        lease.observe(revision: 5, payload: record("other"), at: t0 + .milliseconds(900))
        #expect(lease.due(at: t0 + .milliseconds(1_500)) == nil)
        // The same revision read again does not.
        lease.observe(revision: 5, payload: record("other"), at: t0 + .milliseconds(1_800))
        #expect(lease.due(at: t0 + .milliseconds(1_900)) == .acquire(expect: 5))
        // A watch that lags a read cannot move the entry back.
        lease.observe(revision: 4, payload: record("other"), at: t0 + .milliseconds(1_950))
        #expect(lease.revision == 5)
    }

    @Test func aReleasedEntryIsTakenAtOnceAndNamesWhereItsHolderStopped() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        lease.observe(revision: 8, payload: record("other", released: true, acked: 41), at: t0)
        #expect(lease.due(at: t0) == .acquire(expect: 8))
        lease.wrote(.acquire(expect: 8), revision: 10, record: LeaseRecord.decode(record("me"))!, sentAt: t0)
        #expect(lease.holding?.replaced?.acked == 41)
        #expect(lease.holding?.replaced?.process == "other")
    }

    @Test func anotherProcessWritingOverTheTermEndsItAndARefusedWriteNeedsAFreshRead() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        lease.observe(revision: 0, payload: nil, at: t0)
        lease.wrote(.acquire(expect: 0), revision: 2, record: LeaseRecord.decode(record("me"))!, sentAt: t0)
        // Its own write seen through the watch changes nothing.
        lease.observe(revision: 2, payload: record("me"), at: t0 + .milliseconds(5))
        #expect(lease.holds(at: t0 + .milliseconds(5)) != nil)
        lease.observe(revision: 3, payload: record("other"), at: t0 + .milliseconds(10))
        #expect(lease.holds(at: t0 + .milliseconds(10)) == nil)
        #expect(lease.due(at: t0 + .milliseconds(10)) == nil)

        var refused = PartitionLease(partition: 3, timing: timing, process: "me")
        refused.observe(revision: 0, payload: nil, at: t0)
        refused.refused()
        #expect(refused.due(at: t0 + .seconds(5)) == nil, "nothing is written on a stale view")
        refused.observe(revision: 6, payload: record("other"), at: t0 + .seconds(5))
        #expect(refused.due(at: t0 + .seconds(5)) == nil)
    }

    @Test func itsOwnTermThatRanOutIsTakenBackAtOnceAndAnotherProcessOfTheSameReplicaIdIsNotItsOwn() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        lease.observe(revision: 0, payload: nil, at: t0)
        lease.wrote(.acquire(expect: 0), revision: 2, record: LeaseRecord.decode(record("me"))!, sentAt: t0)
        // The store was unreachable: no renewal landed and the term ran out.
        lease.expire(at: t0 + timing.holdFor)
        #expect(lease.holding == nil)
        #expect(lease.due(at: t0 + timing.holdFor) == .acquire(expect: 2))
        var twin = PartitionLease(partition: 3, timing: timing, process: "me-too")
        twin.observe(revision: 2, payload: record("me"), at: t0)
        #expect(twin.due(at: t0 + .milliseconds(999)) == nil)
    }

    @Test func aCorruptEntryCountsAsHeldUntilItStopsChangingThenIsWrittenOver() {
        var lease = PartitionLease(partition: 3, timing: timing, process: "me")
        lease.observe(revision: 12, payload: Array("not a lease".utf8), at: t0)
        #expect(lease.record == nil)
        #expect(lease.due(at: t0 + .milliseconds(500)) == nil)
        lease.observe(revision: 13, payload: [0xFF, 0x00], at: t0 + .milliseconds(800))
        #expect(lease.due(at: t0 + .milliseconds(1_700)) == nil)
        #expect(lease.due(at: t0 + .milliseconds(1_800)) == .acquire(expect: 13))
    }

    /// A pipeline skips looking at its grants while the board's change count stands: the
    /// keeper's posts repeat every tick, so only a post that changes a grant may move it.
    @Test func theBoardCountsOnlyPostsThatChangeAGrant() {
        let board = LeaseBoard(partitions: [0, 1], process: "p")
        let start = ContinuousClock.now
        let grant = LeaseBoard.Grant(consumer: "c0", validUntil: start + .milliseconds(500), replaced: nil)
        let before = board.changes
        board.post(0, grant: grant, holder: nil)
        let afterGrant = board.changes
        #expect(afterGrant > before)
        board.post(0, grant: grant, holder: nil)
        board.post(1, grant: nil, holder: nil)
        #expect(board.changes == afterGrant, "the same grant posted again, and no grant where there was none")
        board.post(0, grant: LeaseBoard.Grant(consumer: "c0", validUntil: start + .milliseconds(750), replaced: nil), holder: nil)
        #expect(board.changes > afterGrant, "a renewal moves the deadline")
        let afterRenewal = board.changes
        board.post(0, grant: nil, holder: nil)
        #expect(board.changes > afterRenewal, "a grant withdrawn")
    }

    @Test func recordsThatAreNotLeasesDoNotDecode() {
        #expect(LeaseRecord.decode(Array("{}".utf8)) == nil)
        #expect(LeaseRecord.decode(Array(#"{"replica":"a","process":"","consumer":"c","acked":1,"partitions":[]}"#.utf8)) == nil)
        #expect(LeaseRecord.decode(Array(#"{"replica":"a","process":"p","consumer":"c","acked":-1,"partitions":[]}"#.utf8)) == nil)
        let valid = LeaseRecord(replica: "a", process: "p", consumer: "c", acked: 1, partitions: [0, 1])
        #expect(LeaseRecord.decode(valid.encoded()) == valid)
    }
}

/// Ordinals into shares of the partitions, alone and in pairs.
@Suite struct PartitionShareTests {
    @Test func pairsOfOrdinalsOwnTheSameShareAndEveryPartitionHasAPair() throws {
        let single = try (0..<2).map { try PartitionSet.forOrdinal($0, replicas: 2, count: 16).owned }
        #expect(single == [Array(0...7), Array(8...15)])
        let paired = try (0..<4).map { try PartitionSet.forOrdinal($0, replicas: 4, copies: 2, count: 16).owned }
        #expect(paired == [Array(0...7), Array(8...15), Array(0...7), Array(8...15)])
        #expect(throws: FanoutError.self) { try PartitionSet.forOrdinal(0, replicas: 3, copies: 2, count: 16) }
        #expect(throws: FanoutError.self) { try PartitionSet.forOrdinal(0, replicas: 2, copies: 0, count: 16) }
    }
}

/// The keeper against a real nats-server: what it holds follows the store and its pipeline.
@Suite(.serialized) struct LeaseKeeperTests {
    @Test func aHolderWhosePipelineStopsTurningLetsTheLeaseLapseWhileATurningOneKeepsIt() throws {
        let nats = try NATSServerFixture()
        defer { nats.stop() }
        let connection = try NATSConnection(options: .init(url: nats.url, name: "lease-test"))
        defer { connection.close() }
        let jetStream = try connection.jetStream()
        _ = try StreamDefinitions(directory: RepositoryPaths.streams)
            .apply(subjectTransforms: jetStream.serverSupportsStreamSubjectTransforms(), jetStream.applyStream(configJSON:))
        // The deployment's timing (a 500 ms store timeout), with a shorter stall bound.
        var timing = LeaseTiming()
        timing.pipelineStall = .seconds(2)
        var logger = Logger(label: "lease-test")
        logger.logLevel = .critical
        let keeper = try LeaseKeeper(board: LeaseBoard(partitions: [0, 1]), connection: connection, timing: timing, replicaID: "r", metrics: FanoutMetrics(partitions: [0, 1]), logger: logger)
        let board = keeper.board
        // The keeper's loop and partition 1's turning pipeline on threads of their own (the
        // cooperative pool is shared with every other test).
        let stop = StopSignal(), stopped = DispatchSemaphore(value: 0)
        Thread { keeper.keep(until: stop); stopped.signal() }.start()
        let stopTurning = Atomic<Bool>(false)
        Thread {
            while !stopTurning.load(ordering: .relaxed) {
                board.turning([1])
                Thread.sleep(forTimeInterval: 0.05)
            }
        }.start()
        // Partition 0's pipeline turns only until its lease is taken.
        #expect(eventually(timeout: .seconds(10)) {
            board.turning([0])
            return board.grant(0) != nil && board.grant(1) != nil
        })
        #expect(eventually(timeout: .seconds(10)) { board.grant(0) == nil }, "a wedged pipeline's lease lapses")
        #expect(board.grant(1) != nil)
        let revision = leaseEntry(connection, partition: 0)?["revision"] as? Int
        Thread.sleep(forTimeInterval: 1)
        #expect(leaseEntry(connection, partition: 0)?["revision"] as? Int == revision, "partition 0 is neither renewed nor taken again while its pipeline does not turn")
        stop.raise()
        stopped.wait()
        stopTurning.store(true, ordering: .relaxed)
        #expect(leaseEntry(connection, partition: 1)?["released"] as? Bool == true, "a graceful stop releases what it holds")
    }
}
