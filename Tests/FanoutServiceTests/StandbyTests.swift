import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Synchronization
import Testing

/// Replicas that own the same partitions: one delivers each partition, the others stand by
/// warm and take over when it dies, stalls or loses its lease store — with nothing lost, every
/// channel's chain whole, and duplicates only of the same seq.
@Suite(.serialized) struct StandbyTests {
    static let channels = (0..<24).map { "room-\($0)" }

    /// alice (on n1) in every channel, and replicas a and b started in turn on all partitions.
    func deployment(_ extra: [String] = []) throws -> FanoutHarness {
        let harness = try FanoutHarness()
        for channel in Self.channels { try harness.join("alice", channel) }
        try harness.goOnline(instance: "n1", users: ["alice": 0])
        try harness.startFanout(name: "fanout-a", extra: extra)
        try harness.startFanout(name: "fanout-b", extra: extra)
        return harness
    }

    @Test func aStandbyStartedBesideAHealthyActiveStaysStandbyAndReportsIt() throws {
        let harness = try deployment()
        defer { harness.stop() }
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"]?.count == 16 })
        Thread.sleep(forTimeInterval: 2)
        let active = activeByReplica(harness)
        #expect(active["fanout-a"]?.count == 16)
        #expect(active["fanout-b"] == [], "a warm standby reports active_partitions: []")
        #expect(HTTPProbe.waitFor200(port: harness.httpPort("fanout-b")!, path: "/readyz", timeout: .seconds(2)))
        let traffic = try ChatTraffic(harness, channels: Self.channels, perSecond: 200)
        Thread.sleep(forTimeInterval: 1)
        let published = traffic.stop()
        #expect(eventually(timeout: .seconds(10)) { Set(harness.deliveries("n1").map(\.streamSeq)).count >= published.count })
        #expect(harness.deliveries("n1").count == published.count, "one holder: no event delivered twice")
        checkChains(harness.deliveries("n1"), published: published)
    }

    @Test func killingTheActiveReplicaUnderTrafficHandsEveryPartitionToTheStandby() throws {
        let harness = try deployment()
        defer { harness.stop() }
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"]?.count == 16 && activeByReplica(harness)["fanout-b"] == [] })
        let traffic = try ChatTraffic(harness, channels: Self.channels, perSecond: 200)
        Thread.sleep(forTimeInterval: 1.5)
        harness.fanouts["fanout-a"]!.process.send(SIGKILL)
        let killed = ContinuousClock.now
        let before = harness.deliveries("n1").count
        #expect(eventually(timeout: .seconds(15)) { harness.deliveries("n1").count > before + 20 })
        print("takeover after SIGKILL: deliveries again after \(ContinuousClock.now - killed)  (polled)")
        Thread.sleep(forTimeInterval: 1.5)
        let published = traffic.stop()
        expectEveryEventArrives(harness, published)
        #expect(activeByReplica(harness)["fanout-b"]?.count == 16)
        #expect(harness.fanoutLog("fanout-b").contains("partition taken over: delivering it"))
    }

    @Test func aGracefulStopReleasesTheLeasesAndTheStandbyTakesThemAtOnce() throws {
        let harness = try deployment()
        defer { harness.stop() }
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"]?.count == 16 })
        let traffic = try ChatTraffic(harness, channels: Self.channels, perSecond: 200)
        Thread.sleep(forTimeInterval: 1)
        harness.fanouts["fanout-a"]!.process.send(SIGTERM)
        #expect(harness.fanouts["fanout-a"]!.process.waitForExit(timeout: .seconds(10)) == 0)
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-b"]?.count == 16 })
        Thread.sleep(forTimeInterval: 1)
        let published = traffic.stop()
        expectEveryEventArrives(harness, published)
        #expect(harness.fanoutLog("fanout-a").contains("partition lease released"))
        // Released with what was confirmed: the standby had nothing left to redeliver.
        #expect(harness.deliveries("n1").count == published.count, "a graceful hand-over repeats nothing")
    }

    @Test func aStalledActiveLosesItsPartitionsAndStandsByWhenItResumes() throws {
        let harness = try deployment()
        defer { harness.stop() }
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"]?.count == 16 })
        let traffic = try ChatTraffic(harness, channels: Self.channels, perSecond: 200)
        Thread.sleep(forTimeInterval: 1)
        let a = harness.fanouts["fanout-a"]!.process
        a.send(SIGSTOP)
        let before = harness.deliveries("n1").count
        #expect(eventually(timeout: .seconds(15)) { harness.deliveries("n1").count > before + 20 })
        a.send(SIGCONT)
        // Resumed, it finds its terms ran out and another holder: it delivers nothing more.
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"] == [] })
        Thread.sleep(forTimeInterval: 1)
        let published = traffic.stop()
        expectEveryEventArrives(harness, published)
        #expect(activeByReplica(harness)["fanout-b"]?.count == 16)
    }

    @Test func bothReplicasRestartingTogetherShareOutEachPartitionOnce() throws {
        let harness = try deployment()
        defer { harness.stop() }
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"]?.count == 16 })
        let traffic = try ChatTraffic(harness, channels: Self.channels, perSecond: 100)
        Thread.sleep(forTimeInterval: 1)
        for name in ["fanout-a", "fanout-b"] { harness.fanouts[name]!.process.send(SIGKILL) }
        for name in ["fanout-a", "fanout-b"] { _ = harness.fanouts[name]!.process.waitForExit(timeout: .seconds(5)) }
        try harness.startFanout(name: "fanout-a")
        try harness.startFanout(name: "fanout-b")
        #expect(eventually(timeout: .seconds(15)) {
            let active = activeByReplica(harness)
            return (active["fanout-a"] ?? []).count + (active["fanout-b"] ?? []).count == 16
        })
        let active = activeByReplica(harness)
        #expect(Set(active["fanout-a"] ?? []).isDisjoint(with: active["fanout-b"] ?? []), "never two holders of one partition")
        let published = traffic.stop()
        expectEveryEventArrives(harness, published)
    }

    /// The lease stream gone (JetStream cannot store leases): every holder stops delivering
    /// once its terms run out, nobody takes over, and delivery resumes, from one holder per
    /// partition, when the stream is back.
    @Test func aLeaseStoreOutageStopsDeliveryRatherThanMakingTwoHolders() throws {
        let harness = try deployment()
        defer { harness.stop() }
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness)["fanout-a"]?.count == 16 })
        _ = try harness.connection.request("$JS.API.STREAM.DELETE.\(StreamNames.leases)", payload: [], timeout: .seconds(5))
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness).values.allSatisfy { $0.isEmpty } })
        let outage = try ChatTraffic(harness, channels: Self.channels, perSecond: 100)
        Thread.sleep(forTimeInterval: 1)
        let nobody = activeByReplica(harness).values.allSatisfy { $0.isEmpty }
        #expect(nobody)
        let published = outage.stop()
        #expect(harness.fanoutLog("fanout-a").contains("writing a lease failed"))
        _ = try StreamDefinitions(directory: RepositoryPaths.streams)
            .apply(subjectTransforms: harness.jetStream.serverSupportsStreamSubjectTransforms(), harness.jetStream.applyStream(configJSON:))
        #expect(eventually(timeout: .seconds(15)) {
            let active = activeByReplica(harness)
            return (active["fanout-a"] ?? []).count + (active["fanout-b"] ?? []).count == 16
        })
        let active = activeByReplica(harness)
        #expect(Set(active["fanout-a"] ?? []).isDisjoint(with: active["fanout-b"] ?? []))
        expectEveryEventArrives(harness, published)
    }

    /// Bad input: a corrupt lease entry, a replica id used by two processes, and partition
    /// sets that overlap without being equal — each named in a log line, and every partition
    /// still has exactly one holder.
    @Test func corruptEntriesReusedIdsAndUnequalSetsAreNamedAndStillGiveOneHolderEach() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        for channel in Self.channels { try harness.join("alice", channel) }
        try harness.goOnline(instance: "n1", users: ["alice": 0])
        try harness.startFanout(name: "fanout-a", partitions: "0-15", extra: ["--replica-id", "twin"])
        try harness.startFanout(name: "fanout-b", partitions: "0-7", extra: ["--replica-id", "twin"])
        #expect(eventually(timeout: .seconds(10)) { activeByReplica(harness).values.reduce(0) { $0 + $1.count } == 16 })
        _ = try harness.jetStream.publish(LeaseSubjects.lease(partition: 3), payload: Array("garbage".utf8))
        #expect(eventually(timeout: .seconds(10)) { harness.fanoutLog("fanout-a").contains("partition lease entry is unreadable") })
        #expect(eventually(timeout: .seconds(10)) { (leaseEntry(harness.connection, partition: 3)?["consumer"] as? String) != nil })
        #expect(eventually(timeout: .seconds(10)) { activeByProcess(harness).values.reduce(0) { $0 + $1.count } == 16 })
        let active = activeByProcess(harness)
        #expect(Set(active.values.flatMap { $0 }) == Set(0..<16))
        #expect(active.values.flatMap { $0 }.count == 16, "one holder per partition")
        let logs = harness.fanoutLog("fanout-a") + harness.fanoutLog("fanout-b")
        #expect(logs.contains("another process runs with this replica id"))
        #expect(logs.contains("a replica sharing partitions owns a different set"))
        let traffic = try ChatTraffic(harness, channels: Self.channels, perSecond: 100)
        Thread.sleep(forTimeInterval: 1)
        let published = traffic.stop()
        #expect(eventually(timeout: .seconds(15)) { Set(harness.deliveries("n1").map(\.streamSeq)).count >= published.count })
        #expect(harness.deliveries("n1").count == published.count)
        checkChains(harness.deliveries("n1"), published: published)
    }
}

/// Waits until every published event reached n1, then checks its chains (`checkChains`).
func expectEveryEventArrives(_ harness: FanoutHarness, _ published: [(channel: String, seq: UInt64)], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(eventually(timeout: .seconds(15)) { Set(harness.deliveries("n1").map(\.streamSeq)).isSuperset(of: published.map(\.seq)) }, sourceLocation: sourceLocation)
    checkChains(harness.deliveries("n1"), published: published, sourceLocation: sourceLocation)
}

/// Active partitions per replica id, from every replica's stats reply.
func activeByReplica(_ harness: FanoutHarness) -> [String: [Int]] {
    Dictionary(allStats(harness).map { ($0.replica.id, $0.replica.activePartitions ?? []) }, uniquingKeysWith: { $0 + $1 })
}

/// Active partitions per reply (one per process, whatever their replica ids).
func activeByProcess(_ harness: FanoutHarness) -> [Int: [Int]] {
    Dictionary(uniqueKeysWithValues: allStats(harness).enumerated().map { ($0.offset, $0.element.replica.activePartitions ?? []) })
}

func allStats(_ harness: FanoutHarness) -> [Inspection.Stats] {
    guard let inbox = Optional(harness.connection.newInbox()), let subscription = try? harness.connection.subscribeSync(inbox) else { return [] }
    defer { subscription.unsubscribe() }
    guard (try? harness.connection.publish(Inspection.statsSubject, payload: [], reply: inbox)) != nil else { return [] }
    var replies: [Inspection.Stats] = []
    let deadline = ContinuousClock.now + .milliseconds(400)
    while ContinuousClock.now < deadline, let message = try? subscription.nextMessage(timeout: deadline - .now) {
        if let stats = try? JSONDecoder().decode(Inspection.Stats.self, from: Data(message.payload)) { replies.append(stats) }
    }
    return replies
}

/// Checks what a client on n1 would: per channel, in arrival order, every event it had not
/// seen links to the last one it had (`prev`), every duplicate repeats a seq it saw with the
/// same `prev`, and every published event arrived.
func checkChains(_ deliveries: [Delivery], published: [(channel: String, seq: UInt64)], sourceLocation: SourceLocation = #_sourceLocation) {
    var last: [String: UInt64] = [:]
    var prevOf: [UInt64: UInt64] = [:]
    var broken: [String] = []
    for delivery in deliveries {
        if let prev = prevOf[delivery.streamSeq] {
            if prev != delivery.prevSeq { broken.append("duplicate of \(delivery.streamSeq) with another prev") }
            continue
        }
        prevOf[delivery.streamSeq] = delivery.prevSeq
        if delivery.prevSeq != (last[delivery.channelID] ?? 0) {
            broken.append("\(delivery.channelID): \(delivery.streamSeq) links to \(delivery.prevSeq), last seen \(last[delivery.channelID] ?? 0)")
        }
        last[delivery.channelID] = max(last[delivery.channelID] ?? 0, delivery.streamSeq)
    }
    #expect(broken.isEmpty, "\(broken.prefix(5))", sourceLocation: sourceLocation)
    let missing = published.filter { prevOf[$0.seq] == nil }
    #expect(missing.isEmpty, "lost: \(missing.prefix(5))", sourceLocation: sourceLocation)
}

/// Chat events published round-robin over `channels` at a steady rate from a thread of its own.
final class ChatTraffic: @unchecked Sendable {
    private let published = Mutex<[(channel: String, seq: UInt64)]>([])
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(_ harness: FanoutHarness, channels: [String], perSecond: Int) throws {
        let interval = 1.0 / Double(perSecond)
        Thread { [self] in
            var index = 0
            while !stopped.load(ordering: .relaxed) {
                let channel = channels[index % channels.count]
                if let seq = try? harness.publishEvent(channel: channel, text: "\(index)") { published.withLock { $0.append((channel, seq)) } }
                index += 1
                Thread.sleep(forTimeInterval: interval)
            }
            finished.signal()
        }.start()
    }

    /// Stops publishing; what was published, in order.
    func stop() -> [(channel: String, seq: UInt64)] {
        stopped.store(true, ordering: .relaxed)
        finished.wait()
        return published.withLock { $0 }
    }
}
