import Foundation
import Logging
import NATSClient
import RoutingCore
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Synchronization
import Testing
@testable import FanoutService

/// The real output with chosen calls made to fail: every `publishEvery`-th publish, every
/// `flushEvery`-th flush (0: never), and every publish of a delivery for `doomedChannel`.
final class FaultyOutput: PipelineOutput {
    let real: NATSPipelineOutput
    let publishEvery: Int
    let flushEvery: Int
    let doomedChannel: String?
    private let calls = Mutex<(publishes: Int, flushes: Int, failedPublishes: Int, failedFlushes: Int)>((0, 0, 0, 0))

    init(_ real: NATSPipelineOutput, publishEvery: Int = 0, flushEvery: Int = 0, doomedChannel: String? = nil) {
        self.real = real
        self.publishEvery = publishEvery
        self.flushEvery = flushEvery
        self.doomedChannel = doomedChannel
    }

    var failures: (publishes: Int, flushes: Int) { calls.withLock { ($0.failedPublishes, $0.failedFlushes) } }

    func publish(_ subject: String, payload: [UInt8]) throws {
        let doomed = doomedChannel != nil && ((try? Deliveries(decoding: payload).deliveries) ?? []).contains { $0.channelID == doomedChannel }
        let fail = calls.withLock { calls in
            calls.publishes += 1
            let fail = doomed || (publishEvery > 0 && calls.publishes % publishEvery == 0)
            if fail { calls.failedPublishes += 1 }
            return fail
        }
        if fail { throw NATSError.invalidArgument("injected publish failure") }
        try real.publish(subject, payload: payload)
    }

    func flush(timeout: Duration) throws {
        let fail = calls.withLock { calls in
            calls.flushes += 1
            let fail = flushEvery > 0 && calls.flushes % flushEvery == 0
            if fail { calls.failedFlushes += 1 }
            return fail
        }
        if fail { throw NATSError.invalidArgument("injected flush failure") }
        try real.flush(timeout: timeout)
    }

    func deadLetter(_ subject: String, payload: [UInt8], headers: NATSHeaders, msgID: String) throws {
        try real.deadLetter(subject, payload: payload, headers: headers, msgID: msgID)
    }
}

/// One partition's event pipeline in this process against a real nats-server, with a routing
/// table where `alice` (online on notifier `n1`) is a member of `channels`, all of that partition.
final class PipelineRig: @unchecked Sendable {
    static let partitionCount = 16
    let nats: NATSServerFixture
    let connection: NATSConnection
    let jetStream: JetStream
    let partition: Int
    let channels: [String]
    let state: RoutingState
    private let received = Mutex<[Delivery]>([])
    /// Each inbox message of `n1`: how many deliveries and bytes it carried.
    private let messages = Mutex<[(deliveries: Int, bytes: Int, epoch: String)]>([])
    private var inbox: NATSSubscription?

    init(channels count: Int) throws {
        nats = try NATSServerFixture()
        connection = try NATSConnection(options: .init(url: nats.url, name: "pipeline-test"))
        jetStream = try connection.jetStream()
        _ = try StreamDefinitions(directory: RepositoryPaths.streams)
            .apply(subjectTransforms: jetStream.serverSupportsStreamSubjectTransforms(), jetStream.applyStream(configJSON:))
        let partition = Partitioner.partition(of: "room0", count: Self.partitionCount)
        self.partition = partition
        channels = (0..<10_000).lazy.map { "room\($0)" }.filter { Partitioner.partition(of: $0, count: Self.partitionCount) == partition }.prefix(count).map { $0 }
        state = RoutingState(partitions: [partition], partitionCount: Self.partitionCount)
        for (index, channel) in channels.enumerated() {
            let change = MembershipChange(channelID: channel, userID: "alice", state: .joined, version: 1)
            try state.apply(change, partition: partition, subject: Subjects.membership(channel: channel, user: "alice", partitionCount: Self.partitionCount), sequence: UInt64(index + 1))
        }
        try state.applyPresence(PresenceDelta(instanceID: "n1", epoch: 1, userID: "alice", slot: 0, state: .online))
        _ = state.heartbeats([("n1", PresenceFeed.nowMs())], nowMs: PresenceFeed.nowMs(), timeoutMs: 600_000)
        inbox = try connection.subscribe(Subjects.inbox(instance: "n1")) { [weak self] message in
            guard let decoded = try? Deliveries(decoding: message.payload) else { return }
            self?.received.withLock { $0.append(contentsOf: decoded.deliveries) }
            self?.messages.withLock { $0.append((decoded.deliveries.count, message.payload.count, decoded.epoch)) }
        }
    }

    /// Errors only: every injected failure would log a retry warning.
    static let logger: Logger = {
        var logger = Logger(label: "pipeline-test")
        logger.logLevel = .error
        return logger
    }()

    var deliveries: [Delivery] { received.withLock { $0 } }
    var inboxMessages: [(deliveries: Int, bytes: Int)] { messages.withLock { $0.map { ($0.deliveries, $0.bytes) } } }
    /// The distinct epochs the inbox messages carried.
    var inboxEpochs: Set<String> { Set(messages.withLock { $0.map(\.epoch) }) }

    var output: NATSPipelineOutput { NATSPipelineOutput(connection: connection, jetStream: jetStream) }

    func pipeline(_ output: any PipelineOutput, backoff: Duration = .milliseconds(2), ackWait: Duration? = nil, configure: (inout FanoutConfig) -> Void = { _ in }) throws -> EventPipeline {
        var config = FanoutConfig(partitions: try PartitionSet("0-15", count: Self.partitionCount))
        config.fetchBatch = 16
        if let ackWait { config.ackWait = ackWait }
        configure(&config)
        config.retryBackoff = backoff
        config.retryBackoffMax = backoff * 10
        // The rig's pipeline holds its partition's lease for the test's length, under the
        // partition's plain consumer name.
        let leases = LeaseBoard(partitions: [partition], process: "rig")
        leases.post(partition, grant: .init(consumer: ConsumerNames.fanout(partition: partition), validUntil: .now + .seconds(3_600), replaced: nil), holder: nil)
        return try EventPipeline(
            partitions: [partition], jetStream: jetStream, output: output, leases: leases, state: state,
            metrics: FanoutMetrics(partitions: [partition]), config: config, logger: Self.logger
        )
    }

    @discardableResult
    func publish(channel: String, text: String) throws -> UInt64 {
        let id = UUID().uuidString
        let event = ChatEvent(eventID: id, channelID: channel, senderID: "sender", createdAtMs: 1, body: .messageCreated(messageID: id, text: text))
        return try jetStream.publish(Subjects.event(channel: channel, partitionCount: Self.partitionCount), payload: event.encoded(), msgID: id).sequence
    }

    /// Events the partition's consumer still holds unacked (pending plus in flight).
    func consumerUnacked() -> Int? { fanoutConsumerUnacked(connection, partition: partition) }

    func stop() {
        inbox?.unsubscribe()
        connection.close()
        nats.stop()
    }
}

/// Runs `pipeline` as a service until `body` returns, then shuts it down gracefully.
///
/// `body` waits by blocking its thread, so it runs on a thread of its own: on the cooperative
/// pool (one thread per core, shared by the tests running in parallel) it could hold the very
/// thread the pipeline's service needs to start.
///
/// `body` escapes to that thread (a thread may still hold its closure for a moment after the
/// body returned, which `withoutActuallyEscaping` would trap on).
func running<T: Sendable>(_ pipeline: EventPipeline, _ body: @escaping () throws -> T) async throws -> T {
    let group = ServiceGroup(services: [pipeline], logger: Logger(label: "pipeline-test"))
    let task = Task { try await group.run() }
    // The body's time limits start once the pipeline runs: with every suite in one process on
    // two cores, the group's task may wait for a cooperative thread that other tests hold.
    let deadline = ContinuousClock.now + .seconds(60)
    while !pipeline.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    let work = BlockingWork(body)
    let result = await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: Result { try work.body() }) }.start()
    }
    await group.triggerGracefulShutdown()
    try await task.value
    return try result.get()
}

/// A test's blocking body handed to the thread that runs it; only that thread calls it, and
/// `running` waits for it to finish.
private struct BlockingWork<T>: @unchecked Sendable {
    let body: () throws -> T
    init(_ body: @escaping () throws -> T) { self.body = body }
}

/// What one read of events becomes on NATS: one inbox message per instance, not one per event.
@Suite(.serialized) struct InboxBatchTests {
    @Test func eventsReadTogetherGoToEachInstanceInFewerMessagesThanEventsInStreamOrder() async throws {
        let rig = try PipelineRig(channels: 3)
        defer { rig.stop() }
        // Bob, online on n2, is a member of the first two channels only.
        for (index, channel) in rig.channels.prefix(2).enumerated() {
            try rig.state.apply(MembershipChange(channelID: channel, userID: "bob", state: .joined, version: 1), partition: rig.partition,
                                subject: Subjects.membership(channel: channel, user: "bob", partitionCount: PipelineRig.partitionCount), sequence: UInt64(100 + index))
        }
        try rig.state.applyPresence(PresenceDelta(instanceID: "n2", epoch: 1, userID: "bob", slot: 4, state: .online))
        _ = rig.state.heartbeats([("n1", PresenceFeed.nowMs()), ("n2", PresenceFeed.nowMs())], nowMs: PresenceFeed.nowMs(), timeoutMs: 600_000)
        let n2 = Mutex<[[Delivery]]>([])
        let subscription = try rig.connection.subscribe(Subjects.inbox(instance: "n2")) { message in
            if let deliveries = try? Deliveries(decoding: message.payload).deliveries { n2.withLock { $0.append(deliveries) } }
        }
        defer { subscription.unsubscribe() }
        // Stored before the pipeline starts, so that they are there for its first read.
        var published: [(channel: String, seq: UInt64)] = []
        for round in 0..<16 {
            let channel = rig.channels[round % 3]
            published.append((channel, try rig.publish(channel: channel, text: "\(round)")))
        }
        let pipeline = try rig.pipeline(rig.output)
        try await running(pipeline) {
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= 16 && rig.consumerUnacked() == 0 })
        }
        #expect(rig.deliveries.map(\.streamSeq) == published.map(\.seq))
        // The server sends the 16 at once; a read takes what has arrived, so they come in one
        // read or a few (how nats.c's reader chunks them is not the pipeline's to decide), each
        // one message per instance: fewer messages than events.
        let toAlice = rig.inboxMessages.map(\.deliveries)
        #expect(toAlice.reduce(0, +) == 16 && toAlice.count < 16, "\(toAlice)")
        let toBob = n2.withLock { $0 }
        let bobEvents = published.filter { $0.channel != rig.channels[2] }
        #expect(toBob.count < bobEvents.count, "\(toBob.map(\.count))")
        #expect(toBob.joined().map(\.streamSeq) == bobEvents.map(\.seq))
        #expect(toBob.joined().allSatisfy { $0.slots == [4] })
    }

    @Test func theByteBoundCutsABatchIntoSeveralMessagesKeepingTheOrder() async throws {
        let rig = try PipelineRig(channels: 2)
        defer { rig.stop() }
        var published: [UInt64] = []
        for round in 0..<16 { published.append(try rig.publish(channel: rig.channels[round % 2], text: String(repeating: "x", count: 200))) }
        let bound = 1_000
        let pipeline = try rig.pipeline(rig.output) { $0.inboxBatchBytes = bound }
        try await running(pipeline) {
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= 16 && rig.consumerUnacked() == 0 })
        }
        #expect(rig.deliveries.map(\.streamSeq) == published)
        let messages = rig.inboxMessages
        #expect(messages.count > 1 && messages.count < 16, "\(messages)")
        #expect(messages.allSatisfy { $0.bytes <= bound }, "\(messages)")
        #expect(messages.reduce(0) { $0 + $1.deliveries } == 16)
    }
}

/// The ack path under injected publish and flush failures: nothing acked before it is flushed,
/// retries in order, dead letters after the documented number of tries.
@Suite(.serialized) struct AckPathFaultTests {
    @Test func publishAndFlushFailuresLoseNothingAndKeepEveryChannelsOrder() async throws {
        let rig = try PipelineRig(channels: 6)
        defer { rig.stop() }
        let faulty = FaultyOutput(rig.output, publishEvery: 7, flushEvery: 5)
        let pipeline = try rig.pipeline(faulty)
        let published = try await running(pipeline) {
            var published: [String: [UInt64]] = [:]
            for round in 0..<100 {
                for channel in rig.channels { published[channel, default: []].append(try rig.publish(channel: channel, text: "\(round)")) }
            }
            let all = Set(published.values.joined())
            #expect(eventually(timeout: .seconds(60)) { all.isSubset(of: Set(rig.deliveries.map(\.streamSeq))) && rig.consumerUnacked() == 0 })
            return published
        }
        #expect(faulty.failures.publishes > 0 && faulty.failures.flushes > 0, "no fault was injected")
        var firstSeen: [String: [UInt64]] = [:]
        var seen: [UInt64: [UInt8]] = [:]
        for delivery in rig.deliveries {
            if let event = seen[delivery.streamSeq] {
                #expect(event == delivery.event, "a duplicate differs from the first delivery of seq \(delivery.streamSeq)")
                continue
            }
            seen[delivery.streamSeq] = delivery.event
            firstSeen[delivery.channelID, default: []].append(delivery.streamSeq)
        }
        for channel in rig.channels { #expect(firstSeen[channel] == published[channel], "order or completeness of \(channel)") }
        #expect(try rig.jetStream.streamState(StreamNames.deadLetters).messages == 0)
    }

    @Test func eventFailingEveryTryGoesToTheDeadLetterStreamAndThePartitionMovesOnInOrder() async throws {
        let rig = try PipelineRig(channels: 2)
        defer { rig.stop() }
        let (live, doomed) = (rig.channels[0], rig.channels[1])
        let pipeline = try rig.pipeline(FaultyOutput(rig.output, doomedChannel: doomed))
        let (before, lost, after) = try await running(pipeline) {
            let before = try rig.publish(channel: live, text: "before")
            let lost = try rig.publish(channel: doomed, text: "doomed")
            let after = try rig.publish(channel: live, text: "after")
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.contains { $0.streamSeq == after } && rig.consumerUnacked() == 0 })
            return (before, lost, after)
        }
        var firstSeen: [UInt64] = []
        for delivery in rig.deliveries where !firstSeen.contains(delivery.streamSeq) { firstSeen.append(delivery.streamSeq) }
        #expect(firstSeen == [before, after])
        #expect(try rig.jetStream.streamState(StreamNames.deadLetters).messages == 1)
        let letter = try #require(try rig.jetStream.lastMessage(stream: StreamNames.deadLetters, subject: Subjects.deadLetter(partition: rig.partition)))
        #expect(letter.headers[HeaderNames.streamSequence] == "\(lost)")
        #expect(letter.headers[HeaderNames.reason]?.contains("publish failed") == true)
        #expect(letter.headers[HeaderNames.reason]?.contains("after \(EventPipeline.maxTries) tries") == true)
    }

    /// Deliveries the server made but the pipeline never received (here another client pulls
    /// them from the partition's durable; in production a NATS node dies with them in its
    /// buffers) must not be acked by the next ack-all: they are read from the stream and
    /// delivered before the later events, at once rather than after the ack wait.
    @Test func deliveriesLostOnTheWayAreReadFromTheStreamInOrderAndNotAckedUnseen() async throws {
        let rig = try PipelineRig(channels: 2)
        defer { rig.stop() }
        // Longer than the test: a redelivery cannot be what brings the stolen events.
        let ackWait = Duration.seconds(300)
        let pipeline = try rig.pipeline(rig.output, ackWait: ackWait)
        let thief = try rig.jetStream.pullSubscribe(
            stream: StreamNames.events, durable: ConsumerNames.fanout(partition: rig.partition), filterSubject: Subjects.events(partition: rig.partition),
            ackWait: ackWait, maxAckPending: 20_000, ackPolicy: .all
        )
        var published: [UInt64] = []
        for index in 0..<5 { published.append(try rig.publish(channel: rig.channels[index % 2], text: "\(index)")) }
        let stolen = try thief.fetch(batch: 3, timeout: .seconds(5))
        #expect(stolen.map(\.metadata.streamSequence) == Array(published.prefix(3)))
        thief.unsubscribe()
        try await running(pipeline) {
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= published.count && rig.consumerUnacked() == 0 })
            // Later events flow as usual.
            for index in 5..<8 { published.append(try rig.publish(channel: rig.channels[index % 2], text: "\(index)")) }
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= published.count && rig.consumerUnacked() == 0 })
        }
        #expect(rig.deliveries.map(\.streamSeq) == published)
        #expect(try rig.jetStream.streamState(StreamNames.deadLetters).messages == 0)
    }

    @Test func stoppingDuringARetryAcksNothingUnflushedAndARestartDeliversItInOrder() async throws {
        let rig = try PipelineRig(channels: 1)
        defer { rig.stop() }
        let channel = rig.channels[0]
        let failing = FaultyOutput(rig.output, publishEvery: 1)
        var published: [UInt64] = []
        // Tries 200 ms apart and more: the stop comes after the second, long before the tenth.
        try await running(try rig.pipeline(failing, backoff: .milliseconds(200))) {
            for index in 0..<3 { published.append(try rig.publish(channel: channel, text: "\(index)")) }
            #expect(eventually(timeout: .seconds(10)) { failing.failures.publishes >= 2 })
        }
        #expect(rig.deliveries.isEmpty)
        #expect(rig.consumerUnacked() == 3)
        try await running(try rig.pipeline(rig.output)) {
            #expect(eventually(timeout: .seconds(10)) { rig.deliveries.count >= 3 && rig.consumerUnacked() == 0 })
        }
        #expect(rig.deliveries.map(\.streamSeq) == published)
        #expect(try rig.jetStream.streamState(StreamNames.deadLetters).messages == 0)
    }
}
