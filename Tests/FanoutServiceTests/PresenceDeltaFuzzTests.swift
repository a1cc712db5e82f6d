import Foundation
import NATSClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing
@testable import FanoutService

/// What the fan-out reads from Redis and from the snapshot stream, fuzzed: presence deltas
/// (pub/sub `presence`), heartbeat scores (`instances` zset), snapshot manifests, and — on a
/// running process — all of it at once plus inspection requests with any body.
@Suite struct PresenceDeltaFuzzTests {
    static let partitionCount = 4

    static func state() throws -> RoutingState {
        let state = RoutingState(partitions: Array(0..<partitionCount), partitionCount: partitionCount)
        for (index, user) in ["alice", "bob", "carol", "dave"].enumerated() {
            let channel = "general"
            let partition = Partitioner.partition(of: channel, count: partitionCount)
            let change = MembershipChange(channelID: channel, userID: user, state: .joined, version: 1)
            try state.apply(change, partition: partition, subject: "chat.membership.\(partition).\(channel).\(user)", sequence: UInt64(index + 1))
        }
        return state
    }

    @Test func presenceDeltasNeverTrapTheRoutingStateAndPlansStayConsistent() throws {
        let corpus = [PresenceDelta.State.online, .offline, .instanceDown].flatMap { state in
            ["alice", "bob", "mallory", "bad id"].map { PresenceDelta(instanceID: "n1", epoch: 2, userID: $0, slot: 3, state: state).encoded() }
        } + [
            PresenceDelta(instanceID: "n2", epoch: .max, userID: "carol", slot: .max, state: .online).encoded(),
            PresenceDelta(instanceID: "", epoch: 0, userID: "", slot: 0, state: .online).encoded(),
        ]
        let state = try Self.state()
        let partition = Partitioner.partition(of: "general", count: Self.partitionCount)
        var plan = PlanBuffer()
        var random = FuzzRandom(seed: FuzzDriver.seed(for: "heartbeats"))
        let result = FuzzDriver.run("PresenceDelta→RoutingState", corpus: corpus) { bytes in
            let delta: PresenceDelta
            do { delta = try PresenceDelta(decoding: bytes) } catch { return .rejected }
            var outcome = FuzzOutcome.accepted
            do { try state.applyPresence(delta) } catch { outcome = .rejected }
            if random.chance(16) {
                // Heartbeats with scores from anything Redis can hold, through the feed's parser.
                let scores = [Double(bitPattern: random.next()), .infinity, 1e300, Double(PresenceFeed.nowMs())]
                let beats = scores.compactMap { score in PresenceFeed.heartbeatMs(score).map { ("n\(random.next() % 3)", $0) } }
                _ = state.heartbeats(beats, nowMs: PresenceFeed.nowMs(), timeoutMs: 10_000)
            }
            // Every planned slot belongs to an instance the state knows as live.
            state.plan(partition: partition, channel: "general", skipUser: nil, into: &plan)
            let live = Set(state.inspectInstances(replica: Self.replica).instances.map(\.instance))
            let stats = state.stats(replica: Self.replica, lag: [:])
            guard stats.onlineUsers <= stats.users else {
                return .violation("\(stats.onlineUsers) online of \(stats.users) users")
            }
            for user in ["alice", "bob", "carol", "dave"] {
                let placements = state.inspectUser(user, replica: Self.replica).placements
                if let stray = placements.first(where: { !live.contains($0.instance) }) {
                    return .violation("\(user) placed on \(stray.instance), which is not live")
                }
            }
            return outcome
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
    }

    /// Membership facts from `CHAT_MEMBERSHIP` on the subject they arrived on (or another):
    /// applied only when payload and subject agree, and a rejected fact changes nothing.
    @Test func membershipChangesNeverTrapTheRoutingStateAndRejectedOnesChangeNothing() throws {
        let corpus = [MembershipChange.State.joined, .left, .channelDeleted].flatMap { state in
            ["alice", "erin", "bad id", ""].map { MembershipChange(channelID: "general", userID: $0, state: state, version: 5).encoded() }
        } + [MembershipChange(channelID: "other", userID: "bob", state: .joined, version: .max).encoded()]
        let state = try Self.state()
        let partition = Partitioner.partition(of: "general", count: Self.partitionCount)
        var sequence: UInt64 = 100
        let result = FuzzDriver.run("MembershipChange→RoutingState", corpus: corpus) { bytes in
            guard let change = try? MembershipChange(decoding: bytes) else { return .rejected }
            let user = change.state == .channelDeleted ? Subjects.channelDeletedUser : change.userID
            let subject = bytes.count % 3 == 0 ? "chat.membership.\(partition).general.mallory" : "chat.membership.\(partition).\(change.channelID).\(user)"
            let before = state.inspectChannel("general", replica: Self.replica)
            sequence += 1
            do {
                try state.apply(change, partition: partition, subject: subject, sequence: sequence)
                return .accepted
            } catch {
                let after = state.inspectChannel("general", replica: Self.replica)
                return after == before ? .rejected : .violation("rejected change (\(error)) altered general: \(before.members) → \(after.members)")
            }
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
    }

    static let replica = Inspection.Replica(id: "fuzz", partitions: Array(0..<partitionCount), partitionCount: partitionCount, ready: true)

    /// `ZADD instances inf n9` is a valid Redis command; converting its score with `Int64(_:)`
    /// trapped the presence thread (regression: the fan-out exited on the next poll).
    @Test func heartbeatScoresThatAreNotMillisecondsAreSkippedNotATrap() {
        for score in [Double.infinity, -.infinity, .nan, 1e300, -1e300, 9.3e18, -9.3e18] {
            #expect(PresenceFeed.heartbeatMs(score) == nil, "\(score)")
        }
        #expect(PresenceFeed.heartbeatMs(1_700_000_000_123) == 1_700_000_000_123)
        #expect(PresenceFeed.heartbeatMs(-5.5) == -5)
        var random = FuzzRandom(seed: FuzzDriver.seed(for: "scores"))
        for _ in 0..<200_000 {
            let score = Double(bitPattern: random.next())
            if let ms = PresenceFeed.heartbeatMs(score) { #expect(Double(ms) - score.rounded(.towardZero) == 0) }
        }
    }

    @Test func snapshotManifestDecoderNeverTrapsAndBoundsWhatItAccepts() throws {
        let valid = SnapshotStore.Manifest(
            partition: 2, partitionCount: 16, generation: 77, membershipSequence: 77, chunks: 3, bytes: 2_500_000,
            checksum: "cbf29ce484222325", createdAtMs: 1_700_000_000_000, replica: "fanout-0"
        )
        let corpus = [
            Array(try JSONEncoder().encode(valid)),
            Array(#"{"partition":2,"partition_count":16,"generation":1,"membership_seq":1,"chunks":-1,"bytes":0,"checksum":"0","created_at_ms":0,"replica":"r"}"#.utf8),
            Array(#"{"partition":2,"partition_count":16,"generation":1,"membership_seq":1,"chunks":1,"bytes":4611686018427387904,"checksum":"0","created_at_ms":0,"replica":"r"}"#.utf8),
        ]
        let result = FuzzDriver.run("SnapshotManifest", corpus: corpus, generate: ManifestGenerator.generate) { bytes in
            do {
                let manifest = try SnapshotStore.decodeManifest(bytes, partition: 2)
                guard manifest.chunks >= 1, manifest.chunks <= SnapshotStore.maxChunks, manifest.bytes >= 0,
                      manifest.bytes <= manifest.chunks * SnapshotStore.chunkBytes, manifest.partition == 2 else {
                    return .violation("accepted \(manifest)")
                }
                return .accepted
            } catch {
                return .rejected
            }
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
        // The two regression manifests: a negative chunk count (a trapping `0..<-1`) and a
        // 2^62-byte claim (a trapping allocation) are refused.
        for bytes in corpus.dropFirst() {
            #expect(throws: FanoutError.self) { try SnapshotStore.decodeManifest(bytes, partition: 2) }
        }
    }
}

/// Manifests with every field replaced by something else of any JSON type or size.
enum ManifestGenerator {
    static let fields = ["partition", "partition_count", "generation", "membership_seq", "chunks", "bytes", "checksum", "created_at_ms", "replica"]
    static let values = [
        "0", "1", "2", "-1", "16", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "18446744073709551615",
        "1e308", "0.5", "\"2\"", "null", "true", "[]", "{}", "10000", "10001", "10000000000", "\"\"", "\"x\"",
    ]

    static func generate(_ random: inout FuzzRandom, _ corpus: [[UInt8]]) -> [UInt8] {
        var object: [String] = []
        for field in fields where !random.chance(12) {
            let value = random.chance(3) ? values[Int(random.next() % UInt64(values.count))] : field == "checksum" || field == "replica" ? "\"r\"" : field == "partition" ? "2" : "\(random.next() % 4)"
            object.append("\"\(field)\":\(value)")
        }
        var bytes = Array(("{" + object.joined(separator: ",") + "}").utf8)
        if random.chance(4) { bytes = FuzzMutator.mutate(bytes, corpus: corpus, using: &random) }
        return bytes
    }
}

/// The same inputs against the `fanout` process: it must stay up, keep routing, and count
/// what it rejected.
@Suite(.serialized) struct HostileInputProcessTests {
    @Test func fanoutSurvivesHostileSnapshotsPresenceAndInspectionRequests() throws {
        let harness = try FanoutHarness()
        defer { harness.stop() }
        try harness.join("alice", "general")
        try harness.goOnline(instance: "n1", users: ["alice": 5])
        // Manifests no fan-out writes, for partitions this replica loads at start (regression:
        // a negative chunk count and a 2^62-byte claim each stopped the process).
        let hostile = [
            #"{"partition":0,"partition_count":16,"generation":1,"membership_seq":1,"chunks":-1,"bytes":0,"checksum":"0","created_at_ms":0,"replica":"r"}"#,
            #"{"partition":1,"partition_count":16,"generation":1,"membership_seq":1,"chunks":1,"bytes":4611686018427387904,"checksum":"0","created_at_ms":0,"replica":"r"}"#,
            #"{"partition":3,"partition_count":16,"generation":1,"membership_seq":1,"chunks":1000000000000,"bytes":1,"checksum":"0","created_at_ms":0,"replica":"r"}"#,
            #"{"partition":4"#,
        ]
        for (index, manifest) in hostile.enumerated() {
            _ = try harness.jetStream.publish(SnapshotSubjects.manifest(partition: [0, 1, 3, 4][index]), payload: Array(manifest.utf8))
        }
        let fanout = try harness.startFanout()
        let port = try #require(harness.httpPort())

        // Heartbeats no notifier writes.
        for (score, instance) in [("inf", "evil-1"), ("-inf", "evil-2"), ("1e300", "evil-3")] {
            _ = try harness.redisClient.command(["ZADD", PresenceKeys.instances, score, instance])
        }
        // Presence hashes with values that are not slots, ids that are not ids.
        _ = try harness.redisClient.command(["SET", PresenceKeys.epoch(instance: "evil-4"), "not-a-number"])
        _ = try harness.redisClient.command(["SET", PresenceKeys.epoch(instance: "n9"), "3"])
        try harness.redisClient.hset(PresenceKeys.users(instance: "n9"), [("bad id", "1"), ("bob", "-1"), ("carol", "99999999999"), ("dave", "")])
        _ = try harness.redisClient.zadd(PresenceKeys.instances, score: Double(PresenceFeed.nowMs()), member: "n9")
        // Presence deltas: mutations of valid ones and garbage.
        var random = FuzzRandom(seed: FuzzDriver.seed(for: "process-presence"))
        let valid = PresenceDelta(instanceID: "n1", epoch: 1, userID: "alice", slot: 5, state: .online).encoded()
        var published = 0
        for _ in 0..<300 {
            let bytes = FuzzMutator.mutate(valid, corpus: [valid], using: &random)
            // Keep n1's own placement: a mutation may legitimately bump its epoch or take alice offline.
            if let delta = try? PresenceDelta(decoding: bytes), delta.instanceID == "n1" { continue }
            _ = try harness.redisClient.publish(PresenceKeys.channel, bytes)
            published += 1
        }
        // Inspection requests with any body.
        for _ in 0..<100 {
            let subject = [Inspection.userSubject, Inspection.channelSubject, Inspection.statsSubject, Inspection.instancesSubject][Int(random.next() % 4)]
            let body = FuzzMutator.randomBytes(Int(random.next() % 200), using: &random)
            let reply = try harness.connection.request(subject, payload: body, timeout: .seconds(2))
            #expect((try? JSONSerialization.jsonObject(with: Data(reply.payload))) != nil, "reply to \(FuzzDriver.hex(body)) on \(subject)")
        }
        Thread.sleep(forTimeInterval: 1.2)  // two heartbeat polls over the hostile scores
        #expect(fanout.isRunning, "\(harness.fanoutLog())")
        #expect((try? HTTPProbe.get(port: port, path: "/healthz"))?.status == 200)
        let metrics = (try? HTTPProbe.get(port: port, path: "/metrics"))?.body ?? ""
        let rejected = metrics.split(separator: "\n").first { $0.hasPrefix("switchboard_fanout_presence_rejected_total ") }
        #expect(rejected.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 > 0 } == true, "\(published) garbage deltas published")
        #expect(harness.fanoutLog().contains("snapshot not used"))

        // Routing still works: alice's event reaches her slot on n1.
        harness.clearInboxes()
        _ = try harness.publishEvent(channel: "general")
        #expect(eventually(timeout: .seconds(5)) { harness.deliveries("n1").first?.slots == [5] })
    }
}

extension RoutingState {
    /// One change as if it arrived on `subject`, through the feed's decode-and-check path;
    /// throws (and changes nothing) when it is rejected.
    func apply(_ change: MembershipChange, partition: Int, subject: String, sequence: UInt64) throws {
        var subject = subject
        let payload = change.encoded()
        let record = subject.withUTF8 { subjectBytes in
            payload.withUnsafeBufferPointer { MembershipRecord(partition: partition, sequence: sequence, subject: subjectBytes, payload: $0) }
        }
        if let failure = apply([record]).first { throw failure.error }
    }
}
