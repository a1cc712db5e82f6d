import Foundation
@testable import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import Synchronization
import Testing

@Suite("Pull credit (pure)")
struct PullCreditTests {
    let start = ContinuousClock.now

    @Test func asksAgainOnceHalfOfTheOpenCreditIsUsedAndNotBefore() {
        var credit = PullCredit(batch: 10, expires: .seconds(10), heartbeat: .seconds(1), now: start)
        let due1 = credit.needsRequest(at: start)
        #expect(due1)
        credit.requested(at: start)
        #expect(credit.outstanding == 10)
        for _ in 0..<4 { credit.received(at: start) }
        let due2 = credit.needsRequest(at: start)
        #expect(!due2, "6 of 10 still open")
        credit.received(at: start)
        let due3 = credit.needsRequest(at: start)
        #expect(due3, "5 of 10 open: the next request goes out before they are used up")
        credit.requested(at: start)
        #expect(credit.outstanding == 15 && credit.openRequests == 2)
        for _ in 0..<5 { credit.received(at: start) }
        #expect(credit.openRequests == 1, "the oldest request is filled first")
    }

    @Test func aRequestTheServerEndedOrThatMustHaveExpiredNoLongerCounts() {
        var credit = PullCredit(batch: 10, expires: .seconds(10), heartbeat: .seconds(1), now: start)
        credit.requested(at: start)
        credit.ended(at: start + .seconds(1))
        #expect(credit.outstanding == 0)
        credit.requested(at: start + .seconds(1))
        // Heartbeats keep it; its lifetime (expires plus a heartbeat) ends it even if its 408 was lost.
        for second in 2...11 { credit.heard(at: start + .seconds(second)) }
        let due4 = credit.needsRequest(at: start + .seconds(11))
        #expect(!due4)
        credit.heard(at: start + .seconds(12) + .milliseconds(1))
        let due5 = credit.needsRequest(at: start + .seconds(12) + .milliseconds(1))
        #expect(due5)
        #expect(credit.openRequests == 0)
    }

    @Test func twoMissedHeartbeatsMeanTheOpenRequestsAreGone() {
        var credit = PullCredit(batch: 10, expires: .seconds(10), heartbeat: .seconds(1), now: start)
        credit.requested(at: start)
        let due6 = credit.needsRequest(at: start + .seconds(2))
        #expect(!due6, "two heartbeats' time is still within bounds")
        let due7 = credit.needsRequest(at: start + .seconds(2) + .milliseconds(1))
        #expect(due7)
        #expect(credit.openRequests == 0)
    }
}

@Suite("Pull feed against a real nats-server")
struct PullFeedTests {
    static func consumerInfo(_ connection: NATSConnection, partition: Int) throws -> [String: Any] {
        let reply = try connection.request("$JS.API.CONSUMER.INFO.\(StreamNames.events).\(ConsumerNames.fanout(partition: partition))", payload: [], timeout: .seconds(2))
        return try JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any] ?? [:]
    }

    /// Reads until `count` messages came or `timeout` passed.
    /// The process's state in /proc is "T" (stopped by a signal).
    static func isStopped(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: end)...].trimmingCharacters(in: .whitespaces).hasPrefix("T")
    }

    /// `CHAT_EVENTS` with an ack-all consumer of partition 2, read by a feed over its own connection.
    static func feedOfPartition2(_ connection: NATSConnection) throws -> (JetStream, PullFeed) {
        let jetStream = try connection.jetStream()
        _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
        let durable = ConsumerNames.fanout(partition: 2)
        _ = try jetStream.bindPullConsumer(stream: StreamNames.events, durable: durable, filterSubject: Subjects.events(partition: 2), ackPolicy: .all)
        return (jetStream, try PullFeed(connection: connection, stream: StreamNames.events, consumers: [durable], batch: 8))
    }

    static func read(_ feed: PullFeed, count: Int, timeout: Duration = .seconds(10)) throws -> (messages: [PullFeed.Message], gone: [Int]) {
        let deadline = ContinuousClock.now + timeout
        var messages: [PullFeed.Message] = []
        var gone: [Int] = []
        while messages.count < count && ContinuousClock.now < deadline {
            let batch = try feed.read(limit: 100, timeout: .milliseconds(200))
            messages += batch.messages
            gone += batch.gone.map(\.consumer)
        }
        return (messages, gone)
    }

    @Test(arguments: [true, false]) func oneFeedReadsSeveralConsumersInOrderKeepsARequestOpenAndAcksAll(ownConnection: Bool) throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
            for partition in [2, 3] {
                _ = try jetStream.bindPullConsumer(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: partition), filterSubject: Subjects.events(partition: partition), ackPolicy: .all)
            }
            let feed = try PullFeed(connection: connection, stream: StreamNames.events, consumers: [ConsumerNames.fanout(partition: 2), ConsumerNames.fanout(partition: 3)], batch: 4,
                                    ownConnection: ownConnection)
            defer { feed.close() }
            #expect(feed.hasOwnConnection == ownConnection)
            #expect(try feed.read(limit: 10, timeout: .milliseconds(100)).messages.isEmpty)
            for index in 1...6 {
                _ = try jetStream.publish("chat.events.2.room", payload: bytes("a\(index)"))
                _ = try jetStream.publish("chat.events.3.room", payload: bytes("b\(index)"))
            }
            let (messages, gone) = try Self.read(feed, count: 12)
            #expect(gone.isEmpty)
            #expect(messages.filter { $0.consumer == 0 }.map { text($0.payload) } == (1...6).map { "a\($0)" })
            #expect(messages.filter { $0.consumer == 1 }.map { text($0.payload) } == (1...6).map { "b\($0)" })
            #expect(messages.allSatisfy { $0.metadata.numDelivered == 1 && $0.ackSubject.hasPrefix("$JS.ACK.") })
            #expect(messages.first { $0.consumer == 0 }?.subject == "chat.events.2.room")
            // More than one batch of 4 came without waiting for each: requests stay open ahead.
            let waiting = try Self.consumerInfo(connection, partition: 2)["num_waiting"] as? Int ?? 0
            #expect(waiting >= 1, "a request is open at the server while nothing is pending")
            // One ack of the last message acks all six of a partition.
            try feed.ack(try #require(messages.last { $0.consumer == 0 }))
            try connection.flush(timeout: .seconds(2))
            #expect(eventually(timeout: .seconds(5)) { (try? Self.consumerInfo(connection, partition: 2)["num_ack_pending"] as? Int) == 0 })
            #expect(try Self.consumerInfo(connection, partition: 3)["num_ack_pending"] as? Int == 6)
        }
    }

    @Test(arguments: [true, false]) func aDeletedConsumerIsReportedGoneAndARestartedOneDeliversAgain(ownConnection: Bool) throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
            let durable = ConsumerNames.fanout(partition: 2)
            _ = try jetStream.bindPullConsumer(stream: StreamNames.events, durable: durable, filterSubject: Subjects.events(partition: 2), ackPolicy: .all)
            let feed = try PullFeed(connection: connection, stream: StreamNames.events, consumers: [durable], batch: 8, ownConnection: ownConnection)
            defer { feed.close() }
            _ = try jetStream.publish("chat.events.2.room", payload: bytes("first"))
            let first = try Self.read(feed, count: 1)
            #expect(first.messages.map { text($0.payload) } == ["first"])
            try feed.ack(first.messages[0])
            try jetStream.deleteConsumer(stream: StreamNames.events, durable: durable)
            let deadline = ContinuousClock.now + .seconds(10)
            var gone: [Int] = []
            while gone.isEmpty && ContinuousClock.now < deadline { gone = try feed.read(limit: 10, timeout: .milliseconds(100)).gone.map(\.consumer) }
            #expect(gone == [0])
            _ = try jetStream.publish("chat.events.2.room", payload: bytes("second"))
            // Created again after what was taken: the first is not delivered again.
            let start = try jetStream.bindPullConsumer(stream: StreamNames.events, durable: durable, filterSubject: Subjects.events(partition: 2), ackPolicy: .all, startAfter: 1)
            #expect(start.ackFloor == 1)
            feed.restart(0)
            let second = try Self.read(feed, count: 1)
            #expect(second.messages.map { text($0.payload) } == ["second"])
        }
    }

    @Test func deliveriesOnTheFeedsConnectionAreConfirmedOnlyByAFlushOnTheConnectionTheyWentOutOn() throws {
        try withNATS { _, connection in
            let (jetStream, feed) = try Self.feedOfPartition2(connection)
            defer { feed.close() }
            let link = try #require(feed.link)
            let received = Mutex<[String]>([])
            let subscription = try connection.subscribe("notify.inbox.n1") { message in received.withLock { $0.append(text(message.payload)) } }
            defer { subscription.unsubscribe() }
            try connection.flush(timeout: .seconds(2))

            // Confirmed on the connection it went out on.
            feed.publishDelivery("notify.inbox.n1", payload: bytes("one"))
            try feed.flushDeliveries(timeout: .seconds(2))
            #expect(eventually(timeout: .seconds(2)) { received.withLock { $0 } == ["one"] })

            // Published, then the connection is lost before the flush: the flush cannot confirm it.
            feed.publishDelivery("notify.inbox.n1", payload: bytes("two"))
            link.dropConnection()
            #expect(throws: NATSError.self) { try feed.flushDeliveries(timeout: .seconds(2)) }
            // Written, then lost and re-established by a read before the flush: not confirmed either.
            _ = try feed.read(limit: 1, timeout: .milliseconds(50))  // connects again
            let before = link.generation
            feed.publishDelivery("notify.inbox.n1", payload: bytes("three"))
            _ = try feed.read(limit: 1, timeout: .milliseconds(50))  // writes it
            link.dropConnection()
            _ = try feed.read(limit: 1, timeout: .milliseconds(50))
            #expect(link.generation == before + 1)
            #expect(throws: NATSError.self) { try feed.flushDeliveries(timeout: .seconds(2)) }

            // Published again, confirmed; and the feed reads on the new connection (its requests were sent again).
            feed.publishDelivery("notify.inbox.n1", payload: bytes("three again"))
            try feed.flushDeliveries(timeout: .seconds(2))
            #expect(eventually(timeout: .seconds(2)) { received.withLock { $0 }.last == "three again" })
            _ = try jetStream.publish("chat.events.2.room", payload: bytes("after"))
            #expect(try Self.read(feed, count: 1).messages.map { text($0.payload) } == ["after"])
        }
    }

    @Test func aFlushThatTimesOutOnAFrozenServerKeepsTheConnectionAndItsRequests() throws {
        try withNATS { server, connection in
            let (jetStream, feed) = try Self.feedOfPartition2(connection)
            defer { feed.close() }
            let link = try #require(feed.link)
            _ = try feed.read(limit: 1, timeout: .milliseconds(50))  // the requests go out
            let generation = link.generation
            feed.publishDelivery("notify.inbox.n1", payload: bytes("slow"))
            server.process.send(SIGSTOP)
            // The signal lands asynchronously: flush once the server is seen stopped.
            #expect(eventually(timeout: .seconds(5)) { Self.isStopped(server.process.pid) })
            #expect(throws: NATSError.self) { try feed.flushDeliveries(timeout: .milliseconds(300)) }
            server.process.send(SIGCONT)
            // Busy is not gone: same connection, the late PONG still counts, and the requests
            // sent before deliver what is published now.
            feed.publishDelivery("notify.inbox.n1", payload: bytes("slow again"))
            try feed.flushDeliveries(timeout: .seconds(2))
            #expect(link.generation == generation)
            _ = try jetStream.publish("chat.events.2.room", payload: bytes("after"))
            #expect(try Self.read(feed, count: 1).messages.map { text($0.payload) } == ["after"])
            #expect(link.generation == generation)
        }
    }
}
