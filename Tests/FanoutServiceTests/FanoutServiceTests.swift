import FanoutService
import Foundation
import NATSClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing

/// The fan-out as a process against real nats-server and redis-server (FanoutHarness).
@Suite(.serialized) struct FanoutServiceTests {
    @Test func eventReachesExactlyTheInstancesOfOnlineMembers() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        for user in ["alice", "bob", "carol", "dave", "erin"] { try harness.join(user, "general") }
        try harness.join("frank", "elsewhere")
        try harness.goOnline(instance: "n1", users: ["alice": 3, "bob": 4])
        try harness.goOnline(instance: "n2", users: ["carol": 0])
        try harness.goOnline(instance: "n3", users: ["dave": 9])
        try harness.goOnline(instance: "n4", users: ["frank": 1])  // online, but not a member
        try harness.startFanout()
        #expect(eventually(timeout: .seconds(5)) { try harness.inspect(Inspection.channelSubject, "general", as: Inspection.Channel.self).onlineMembers == 4 })

        let sequence = try harness.publishEvent(channel: "general")
        #expect(eventually(timeout: .seconds(5)) { harness.instancesWithMessages.count >= 3 })
        Thread.sleep(forTimeInterval: 0.3)  // anything extra would arrive now
        #expect(harness.instancesWithMessages == ["n1", "n2", "n3"])
        let n1 = harness.deliveries("n1"), n2 = harness.deliveries("n2"), n3 = harness.deliveries("n3")
        #expect(n1.count == 1 && n2.count == 1 && n3.count == 1)
        #expect(n1.first?.slots.sorted() == [3, 4])
        #expect(n2.first?.slots == [0])
        #expect(n3.first?.slots == [9])
        #expect(n1.first?.streamSeq == sequence)
        #expect(n1.first?.channelID == "general")
        let event = try ChatEvent(decoding: n1.first?.event ?? [])
        #expect(event.channelID == "general")
    }

    @Test func eventWithoutOnlineRecipientsIsAckedWithoutPublishing() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.join("alice", "quiet")
        try harness.startFanout()
        try harness.publishEvent(channel: "quiet")
        #expect(eventually(timeout: .seconds(5)) {
            try harness.inspect(Inspection.statsSubject, as: Inspection.Stats.self).eventLag.values.allSatisfy { $0 == 0 }
                && harness.jetStreamConsumerPending(partition: Partitioner.partition(of: "quiet", count: FanoutHarness.partitionCount)) == 0
        })
        #expect(harness.instancesWithMessages.isEmpty)
    }

    @Test func perChannelOrderHoldsWithManyChannelsPublishedConcurrently() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        let channels = (0..<24).map { "room\($0)" }
        for channel in channels { try harness.join("alice", channel) }
        try harness.goOnline(instance: "n1", users: ["alice": 0])
        try harness.startFanout()
        #expect(harness.routes(to: "alice"))
        let perChannel = 25
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for round in 0..<perChannel {
                for channel in channels.enumerated().filter({ $0.offset % 4 == worker }).map(\.element) {
                    _ = try? harness.publishEvent(channel: channel, text: "\(round)")
                }
            }
        }
        #expect(eventually(timeout: .seconds(20)) { harness.deliveries("n1").count >= channels.count * perChannel })
        var lastSequence: [String: UInt64] = [:]
        var ordered = true
        for delivery in harness.deliveries("n1") {
            if let last = lastSequence[delivery.channelID], delivery.streamSeq <= last { ordered = false }
            lastSequence[delivery.channelID] = delivery.streamSeq
        }
        #expect(ordered)
        #expect(Set(harness.deliveries("n1").map(\.streamSeq)).count == channels.count * perChannel)
    }

    /// A nats-server restart under a running fan-out (stream and consumers on file): its
    /// connections come back, its pull requests are sent again, and every event published
    /// before and after the restart arrives, in chain.
    @Test func aNATSServerRestartUnderARunningFanoutLosesNothing() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        let channels = (0..<4).map { "team\($0)" }
        for channel in channels { try harness.join("bob", channel) }
        try harness.goOnline(instance: "n1", users: ["bob": 1])
        try harness.startFanout(name: "fanout-a")
        #expect(harness.routes(to: "bob"))
        var published: [(channel: String, seq: UInt64)] = []
        for index in 0..<40 { published.append((channels[index % 4], try harness.publishEvent(channel: channels[index % 4]))) }
        #expect(eventually(timeout: .seconds(10)) { Set(harness.deliveries("n1").map(\.streamSeq)).isSuperset(of: published.map(\.seq)) })

        try harness.nats.restart()
        for index in 0..<40 {
            let channel = channels[index % 4]
            var seq: UInt64?
            #expect(eventually(timeout: .seconds(10)) { seq = try? harness.publishEvent(channel: channel); return seq != nil })
            if let seq { published.append((channel, seq)) }
        }
        expectEveryEventArrives(harness, published)
    }

    @Test func killedFanoutRedeliversEveryEventAfterRestart() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        let channels = (0..<8).map { "team\($0)" }
        for channel in channels { try harness.join("bob", channel) }
        try harness.goOnline(instance: "n1", users: ["bob": 1])
        let fanout = try harness.startFanout()
        #expect(harness.routes(to: "bob"))
        var published: Set<UInt64> = []
        for index in 0..<400 {
            published.insert(try harness.publishEvent(channel: channels[index % channels.count]))
            if index == 200 { fanout.send(SIGKILL) }
        }
        _ = fanout.waitForExit(timeout: .seconds(5))
        try harness.startFanout()
        #expect(eventually(timeout: .seconds(20)) { published.isSubset(of: Set(harness.deliveries("n1").map(\.streamSeq))) })
        let delivered = harness.deliveries("n1")
        #expect(published.subtracting(delivered.map(\.streamSeq)).isEmpty, "lost events")
        // A duplicate is the same event again: same sequence, same payload.
        var payloads: [UInt64: [UInt8]] = [:]
        for delivery in delivered {
            if let seen = payloads[delivery.streamSeq] { #expect(seen == delivery.event) }
            payloads[delivery.streamSeq] = delivery.event
        }
    }

    @Test func coldStartFromSnapshotAndFromFullReplayBuildTheSameTable() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        for index in 0..<300 { try harness.join("user\(index % 37)", "chan\(index % 23)") }
        for index in 0..<40 { try harness.leave("user\(index % 37)", "chan\(index % 23)") }
        let first = try harness.startFanout(extra: ["--snapshot-every-changes", "1", "--snapshot-interval-seconds", "1"])
        let partitions = Set((0..<23).map { Partitioner.partition(of: "chan\($0)", count: FanoutHarness.partitionCount) })
        #expect(eventually(timeout: .seconds(15)) { harness.snapshotManifests() == partitions.count })
        let fromReplay = try harness.tableFingerprint(channels: (0..<23).map { "chan\($0)" })
        // The replay read through the scan, and live changes after it through nats.c.
        #expect(harness.fanoutLog().contains("membership replay reads over a connection of its own"), "\(harness.fanoutLog())")
        #expect(!harness.fanoutLog().contains("membership scan failed"))
        first.stop()
        try harness.startFanout(name: "fanout-b")
        #expect(harness.fanoutLog("fanout-b").contains("snapshot loaded"))
        let fromSnapshot = try harness.tableFingerprint(channels: (0..<23).map { "chan\($0)" })
        #expect(fromReplay == fromSnapshot)
        #expect(fromReplay.values.reduce(0, +) == 300 - 40 - duplicateJoins())
    }

    /// Images share one user dictionary per replica: a restart interns it once, a new process
    /// writes its own lineage into the other slot (the loaded images stay readable), a third
    /// start with images naming both slots loads both and rewrites the ones its slot held,
    /// and a corrupt dictionary sends only its partitions to a full replay.
    @Test func snapshotImagesShareAUserDictionaryThatSurvivesRestartsAndCorruption() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        let channels = (0..<23).map { "chan\($0)" }
        for index in 0..<300 { try harness.join("user\(index % 37)", "chan\(index % 23)") }
        let partitions = Set(channels.map { Partitioner.partition(of: $0, count: FanoutHarness.partitionCount) })
        let store = SnapshotStore(jetStream: harness.jetStream)
        func dictionaries() -> [Int: SnapshotStore.DictionaryReference] {
            var found: [Int: SnapshotStore.DictionaryReference] = [:]
            for partition in partitions { found[partition] = (try? store.readManifest(partition: partition))??.dictionary }
            return found
        }
        let snapshotEveryChange = ["--snapshot-every-changes", "1", "--snapshot-interval-seconds", "1"]

        let first = try harness.startFanout(extra: snapshotEveryChange)
        #expect(eventually(timeout: .seconds(15)) { dictionaries().count == partitions.count })
        let written = dictionaries()
        #expect(Set(written.values.map(\.slot)) == ["a"] && Set(written.values.map(\.lineage)).count == 1, "\(written)")
        #expect(written.values.allSatisfy { $0.users == 37 && $0.bytes > 37 * 6 }, "\(written)")
        let expected = try harness.tableFingerprint(channels: channels)
        first.stop()

        // Second process: loads the dictionary once, writes its own lineage into slot b.
        let second = try harness.startFanout(extra: snapshotEveryChange)
        #expect(harness.fanoutLog().components(separatedBy: "snapshot dictionary loaded").count - 1 == 1, "\(harness.fanoutLog())")
        #expect(harness.fanoutLog().components(separatedBy: "snapshot loaded").count - 1 == partitions.count)
        #expect(try harness.tableFingerprint(channels: channels) == expected)
        try harness.join("newcomer", "chan0")
        let changed = Partitioner.partition(of: "chan0", count: FanoutHarness.partitionCount)
        #expect(eventually(timeout: .seconds(15)) { dictionaries()[changed]?.slot == "b" })
        #expect(dictionaries().filter { $0.value.slot == "a" }.count == partitions.count - 1)
        let secondLineage = try #require(dictionaries()[changed]?.lineage)
        var withNewcomer = expected
        withNewcomer["chan0"]! += 1
        second.stop()

        // Third: slot b is named by one image, a by the rest; it loads both and takes b over,
        // rewriting that one image at once with its own lineage.
        let third = try harness.startFanout(extra: snapshotEveryChange)
        #expect(harness.fanoutLog().components(separatedBy: "snapshot dictionary loaded").count - 1 == 2, "\(harness.fanoutLog())")
        #expect(try harness.tableFingerprint(channels: channels) == withNewcomer)
        #expect(eventually(timeout: .seconds(15)) { dictionaries()[changed].map { $0.slot == "b" && $0.lineage != secondLineage } == true })
        third.stop()

        // Slot a's first segment corrupted: its images are replayed, the table is the same.
        let replica = SnapshotStore.replicaToken("fanout-a")
        _ = try harness.jetStream.publish(SnapshotSubjects.dictionarySegment(replica: replica, slot: "a", index: 0), payload: Array("SBUD garbage".utf8))
        try harness.startFanout()
        #expect(harness.fanoutLog().contains("snapshot dictionary not used"), "\(harness.fanoutLog())")
        #expect(harness.fanoutLog().components(separatedBy: "snapshot not used").count - 1 == partitions.count - 1)
        #expect(try harness.tableFingerprint(channels: channels) == withNewcomer)
    }

    /// 300 joins over (user % 37, chan % 23) pairs repeat some pairs; leaves hit distinct ones.
    func duplicateJoins() -> Int {
        var pairs = Set<String>()
        for index in 0..<300 { pairs.insert("\(index % 37)-\(index % 23)") }
        return 300 - pairs.count
    }

    @Test func poisonEventsGoToTheDeadLetterStreamAndThePipelineContinues() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.join("alice", "general")
        try harness.goOnline(instance: "n1", users: ["alice": 0])
        try harness.startFanout()
        #expect(harness.routes(to: "alice"))
        let subject = Subjects.event(channel: "general", partitionCount: FanoutHarness.partitionCount)
        _ = try harness.jetStream.publish(subject, payload: [0xff, 0xff, 0x01, 0x02])
        let wrongChannel = ChatEvent(eventID: "e1", channelID: "other", senderID: "alice", createdAtMs: 1, body: .messageCreated(messageID: "m", text: "x"))
        _ = try harness.jetStream.publish(subject, payload: wrongChannel.encoded())
        let good = try harness.publishEvent(channel: "general")
        #expect(eventually(timeout: .seconds(10)) { harness.deliveries("n1").contains { $0.streamSeq == good } })
        let partition = Partitioner.partition(of: "general", count: FanoutHarness.partitionCount)
        #expect(eventually(timeout: .seconds(5)) { (try? harness.jetStream.streamState(StreamNames.deadLetters).messages) == 2 })
        let letter = try #require(try harness.jetStream.lastMessage(stream: StreamNames.deadLetters, subject: Subjects.deadLetter(partition: partition)))
        #expect(letter.headers[HeaderNames.reason]?.contains("does not match subject") == true)
        #expect(harness.fanoutLog().contains("event dead-lettered"))
    }

    @Test func silentInstanceDisappearsFromRoutingWithinTenSeconds() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        #expect(try harness.startWithAliceOnN1AndBobOnN2())
        harness.stopHeartbeat(instance: "n2")
        let stopped = ContinuousClock.now
        #expect(eventually(timeout: .seconds(14)) { try harness.inspect(Inspection.channelSubject, "general", as: Inspection.Channel.self).targets.map(\.instance) == ["n1"] })
        #expect(ContinuousClock.now - stopped < .seconds(13))
        harness.clearInboxes()
        try harness.publishEvent(channel: "general")
        #expect(eventually(timeout: .seconds(5)) { !harness.deliveries("n1").isEmpty })
        #expect(harness.deliveries("n2").isEmpty)
    }

    @Test func typingIsRelayedToMembersOnlyAndCoalesced() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        #expect(try harness.startWithAliceOnN1AndBobOnN2(bobSlot: 5))
        let subject = Subjects.typing(channel: "general", partitionCount: FanoutHarness.partitionCount)
        for _ in 0..<5 { try harness.connection.publish(subject, payload: Typing(channelID: "general", userID: "alice").encoded()) }
        try harness.connection.publish(subject, payload: Typing(channelID: "general", userID: "mallory").encoded())
        #expect(eventually(timeout: .seconds(5)) { !harness.inboxMessages("n2").isEmpty })
        Thread.sleep(forTimeInterval: 0.3)
        let typing = harness.inboxMessages("n2")
        #expect(typing.count == 1)
        #expect(typing.first?.headers[InboxKind.header] == InboxKind.typing)
        let relayed = try Typing(decoding: typing.first?.payload ?? [])
        #expect(relayed.userID == "alice" && relayed.slots == [5])
        #expect(harness.inboxMessages("n1").isEmpty, "the typist gets no echo")
    }

    @Test func operationsEndpointServesHealthReadinessAndMetrics() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.startFanout()
        let port = try #require(harness.httpPort())
        #expect(try HTTPProbe.get(port: port, path: "/healthz").status == 200)
        #expect(try HTTPProbe.get(port: port, path: "/readyz").status == 200)
        let metrics = try HTTPProbe.get(port: port, path: "/metrics")
        #expect(metrics.body.contains("switchboard_fanout_cold_start_seconds"))
        #expect(metrics.body.contains("switchboard_fanout_memberships"))
    }

    @Test func invalidConfigurationExitsWithOneClearLine() throws {
        let logs = try TemporaryDirectory(prefix: "switchboard-test-config")
        defer { logs.remove() }
        let process = try ServerProcess(name: "fanout", executable: BuiltProducts.path("fanout"), arguments: ["--partitions", "0-99"], logURL: logs.url.appendingPathComponent("log"))
        #expect(process.waitForExit(timeout: .seconds(10)) == 1)
        #expect(process.log().contains("--partitions '0-99'"))
    }
}

/// Upstream and presence written by clients nobody here wrote (nats-py, redis-py), with
/// protobuf encoded by hand in Python: the partition hash and wire format interoperate.
@Suite(.serialized) struct ForeignPublisherTests {
    @Test func eventFromAPythonPublisherReachesThePythonRegisteredInstance() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.startFanout()
        let script = RepositoryPaths.root.appendingPathComponent("Tests/FanoutServiceTests/Peers/upstream.py").path
        let logs = try TemporaryDirectory(prefix: "switchboard-test-python")
        defer { logs.remove() }
        let python = try ServerProcess(name: "upstream.py", executable: PythonPeer.interpreter, arguments: [script, harness.nats.url, harness.redis.url], logURL: logs.url.appendingPathComponent("out"))
        #expect(python.waitForExit(timeout: .seconds(20)) == 0, "\(python.log())")
        let sequence = UInt64(python.log().split(separator: "\n").last.map(String.init) ?? "")
        #expect(sequence != nil, "\(python.log())")
        #expect(eventually(timeout: .seconds(5)) { !harness.deliveries("py-notifier").isEmpty })
        let delivery = try #require(harness.deliveries("py-notifier").first)
        #expect(delivery.slots == [7])
        #expect(delivery.streamSeq == sequence)
        let event = try ChatEvent(decoding: delivery.event)
        #expect(event.eventID == "py-event-1" && event.channelID == "py-room")
        #expect(event.body == .messageCreated(messageID: "m-1", text: "hello from python"))
    }
}

/// `routectl` as an operator runs it: a process against a running deployment.
@Suite(.serialized) struct RoutectlTests {
    func routectl(_ arguments: [String], nats: String, in logs: TemporaryDirectory) throws -> (status: Int32?, output: String) {
        let process = try ServerProcess(
            name: "routectl", executable: BuiltProducts.path("routectl"), arguments: arguments,
            environment: ["SWITCHBOARD_NATS_URL": nats], logURL: logs.url.appendingPathComponent("routectl-\(UUID().uuidString.prefix(6)).log")
        )
        let status = process.waitForExit(timeout: .seconds(15))
        return (status, process.log())
    }

    @Test func answersMergesAndFailsWithDocumentedExitCodes() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        let logs = try TemporaryDirectory(prefix: "switchboard-test-routectl")
        defer { logs.remove() }
        // No replica yet: exit 2, naming what did not answer.
        let silent = try routectl(["stats", "--timeout", "0.5"], nats: harness.nats.url, in: logs)
        #expect(silent.status == 2)
        #expect(silent.output.contains("no fan-out replica answered"))

        try harness.join("alice", "general")
        try harness.goOnline(instance: "n1", users: ["alice": 4])
        try harness.startFanout(name: "fanout-a", partitions: "0-7")
        try harness.startFanout(name: "fanout-b", partitions: "8-15")
        #expect(harness.routes(to: "alice"))

        let channel = try routectl(["channel", "general"], nats: harness.nats.url, in: logs)
        #expect(channel.status == 0)
        #expect(channel.output.contains("n1"))
        let user = try routectl(["user", "alice", "--json"], nats: harness.nats.url, in: logs)
        #expect(user.status == 0)
        #expect(user.output.contains("\"slot\" : 4"))
        let stats = try routectl(["stats"], nats: harness.nats.url, in: logs)
        #expect(stats.status == 0)
        #expect(stats.output.contains("fanout-a") && stats.output.contains("fanout-b") && stats.output.contains("total"))
        #expect(!stats.output.contains("PARTIAL"))

        let unknown = try routectl(["user", "nobody"], nats: harness.nats.url, in: logs)
        #expect(unknown.status == 1)
        let invalid = try routectl(["channel", "bad.id"], nats: harness.nats.url, in: logs)
        #expect(invalid.status == 1)
        #expect(invalid.output.contains("invalid channel id"))

        // One of two replicas gone: the answer is marked partial.
        harness.stopFanout("fanout-b")
        let partial = try routectl(["stats", "--timeout", "1"], nats: harness.nats.url, in: logs)
        #expect(partial.output.contains("PARTIAL"))

        let unreachable = try routectl(["stats"], nats: "nats://127.0.0.1:1", in: logs)
        #expect(unreachable.status == 3)
    }
}
