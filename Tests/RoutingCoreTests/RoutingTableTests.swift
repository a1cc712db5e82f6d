import PropertyBased
import RoutingCore
import SwitchboardContracts
import SwitchboardHarness
import Testing

/// The naive model the table must agree with: plain sets and dictionaries of strings.
struct NaiveRouting {
    var members: [String: Set<String>] = [:]
    /// user → instance → slot
    var placements: [String: [String: UInt32]] = [:]

    func plan(channel: String, skip: String?) -> [String: [UInt32]] {
        var result: [String: [UInt32]] = [:]
        for user in members[channel] ?? [] where user != skip {
            for (instance, slot) in placements[user] ?? [:] { result[instance, default: []].append(slot) }
        }
        return result.mapValues { $0.sorted() }
    }

    /// Where the skipped sender gets the event's position only: its placements, when it is a member.
    func positions(channel: String, skip: String) -> [String: [UInt32]] {
        guard members[channel]?.contains(skip) == true else { return [:] }
        return (placements[skip] ?? [:]).reduce(into: [:]) { $0[$1.key, default: []].append($1.value) }
    }
}

/// The plan's content slots per instance (instances with positions only are left out).
func planned(_ buffer: PlanBuffer) -> [String: [UInt32]] {
    var result: [String: [UInt32]] = [:]
    for (index, target) in buffer.targets.enumerated() {
        #expect(target.inboxSubject == Subjects.inbox(instance: target.instanceID))
        #expect(result[target.instanceID] == nil, "one delivery per instance")
        if !buffer.slots[index].isEmpty { result[target.instanceID] = buffer.slots[index].sorted() }
    }
    return result
}

/// The plan's position-only slots per instance.
func plannedPositions(_ buffer: PlanBuffer) -> [String: [UInt32]] {
    var result: [String: [UInt32]] = [:]
    for (index, target) in buffer.targets.enumerated() where !buffer.positionSlots[index].isEmpty {
        result[target.instanceID] = buffer.positionSlots[index].sorted()
    }
    return result
}

let partitionCount = 4
let channelNames = (0..<12).map { "ch\($0)" }
let userNames = (0..<40).map { "u\($0)" }
let instanceNames = ["n0", "n1", "n2"]

@Suite struct RoutingTableTests {
    func table() -> RoutingTable { RoutingTable(partitions: Array(0..<partitionCount), partitionCount: partitionCount) }

    func join(_ table: inout RoutingTable, _ user: String, _ channel: String, version: UInt64 = 1) throws {
        try table.applyMembership(partition: Partitioner.partition(of: channel, count: partitionCount), channel: channel, user: user, state: .joined, version: version)
    }

    @Test func eventReachesOnlyInstancesWithOnlineMembers() throws {
        var table = table()
        for user in ["alice", "bob", "carol", "dave"] { try join(&table, user, "general") }
        try join(&table, "erin", "other")
        try table.applyPresence(instance: "n1", epoch: 1, .online(user: "alice", slot: 0))
        try table.applyPresence(instance: "n1", epoch: 1, .online(user: "bob", slot: 1))
        try table.applyPresence(instance: "n2", epoch: 1, .online(user: "carol", slot: 7))
        try table.applyPresence(instance: "n3", epoch: 1, .online(user: "erin", slot: 0))
        var plan = PlanBuffer()
        let p = Partitioner.partition(of: "general", count: partitionCount)
        let recipients = table.plan(partition: p, channel: "general", into: &plan)
        #expect(recipients == 3)
        #expect(planned(plan) == ["n1": [0, 1], "n2": [7]])
        table.plan(partition: p, channel: "general", skipUser: "alice", into: &plan)
        #expect(planned(plan) == ["n1": [1], "n2": [7]])
        #expect(table.plan(partition: p, channel: "nobody-here", into: &plan) == 0)
        #expect(plan.targets.isEmpty)
    }

    @Test func userOnSeveralInstancesGetsOneDeliveryOnEach() throws {
        var table = table()
        try join(&table, "alice", "general")
        for (index, instance) in ["a", "b", "c", "d"].enumerated() {
            try table.applyPresence(instance: instance, epoch: 1, .online(user: "alice", slot: UInt32(index)))
        }
        var plan = PlanBuffer()
        table.plan(partition: Partitioner.partition(of: "general", count: partitionCount), channel: "general", into: &plan)
        #expect(planned(plan) == ["a": [0], "b": [1], "c": [2], "d": [3]])
        try table.applyPresence(instance: "b", epoch: 1, .offline(user: "alice"))
        table.plan(partition: Partitioner.partition(of: "general", count: partitionCount), channel: "general", into: &plan)
        #expect(planned(plan) == ["a": [0], "c": [2], "d": [3]])
    }

    @Test func membershipIsIdempotentAndOrderedByVersion() throws {
        var table = table()
        let p = Partitioner.partition(of: "general", count: partitionCount)
        holds(try table.applyMembership(partition: p, channel: "general", user: "alice", state: .joined, version: 1) == .applied)
        holds(try table.applyMembership(partition: p, channel: "general", user: "alice", state: .joined, version: 1) == .unchanged)
        holds(try table.applyMembership(partition: p, channel: "general", user: "alice", state: .left, version: 3) == .applied)
        holds(try table.applyMembership(partition: p, channel: "general", user: "alice", state: .joined, version: 2) == .stale)
        #expect(!table.isMember(partition: p, channel: "general", user: "alice"))
        holds(try table.applyMembership(partition: p, channel: "general", user: "bob", state: .joined, version: 4) == .applied)
        holds(try table.applyMembership(partition: p, channel: "general", user: "_", state: .channelDeleted, version: 5) == .applied)
        #expect(!table.isMember(partition: p, channel: "general", user: "bob"))
        holds(try table.applyMembership(partition: p, channel: "general", user: "carol", state: .joined, version: 5) == .stale)
        holds(try table.applyMembership(partition: p, channel: "general", user: "carol", state: .joined, version: 6) == .applied)
        #expect(table.membershipCount == 1)
    }

    @Test func invalidIDsAndForeignPartitionsAreRejected() {
        var table = RoutingTable(partitions: [0], partitionCount: partitionCount)
        let foreign = channelNames.first { Partitioner.partition(of: $0, count: partitionCount) != 0 }!
        #expect(throws: RoutingTable.ApplyError.self) {
            try table.applyMembership(partition: 0, channel: "bad.channel", user: "alice", state: .joined, version: 1)
        }
        #expect(throws: RoutingTable.ApplyError.self) {
            try table.applyMembership(partition: Partitioner.partition(of: foreign, count: partitionCount), channel: foreign, user: "alice", state: .joined, version: 1)
        }
        #expect(throws: RoutingTable.ApplyError.self) {
            try table.applyPresence(instance: "n*", epoch: 1, .online(user: "alice", slot: 0))
        }
    }

    @Test func newerEpochReplacesAnInstancesUsersAndStaleDeltasAreIgnored() throws {
        var table = table()
        try join(&table, "alice", "general")
        try join(&table, "bob", "general")
        let p = Partitioner.partition(of: "general", count: partitionCount)
        try table.applyPresence(instance: "n1", epoch: 5, .online(user: "alice", slot: 0))
        holds(try table.applyPresence(instance: "n1", epoch: 6, .online(user: "bob", slot: 0)) == .applied)
        holds(try table.applyPresence(instance: "n1", epoch: 5, .online(user: "alice", slot: 3)) == .staleEpoch)
        var plan = PlanBuffer()
        table.plan(partition: p, channel: "general", into: &plan)
        #expect(planned(plan) == ["n1": [0]])
        #expect(plan.recipients == 1)
        try table.applyPresence(instance: "n1", epoch: 6, .instanceDown)
        #expect(table.plan(partition: p, channel: "general", into: &plan) == 0)
        holds(try table.applyPresence(instance: "n1", epoch: 6, .online(user: "bob", slot: 0)) == .staleEpoch)
        holds(try table.applyPresence(instance: "n1", epoch: 7, .online(user: "bob", slot: 0)) == .applied)
    }

    @Test func silentInstanceExpiresAndRevivesOnHeartbeat() throws {
        var table = table()
        try join(&table, "alice", "general")
        try table.applyPresence(instance: "n1", epoch: 1, .online(user: "alice", slot: 0))
        try table.applyPresence(instance: "n2", epoch: 1, .online(user: "bob", slot: 0))
        var result = table.heartbeats([("n1", 1_000), ("n2", 1_000)], nowMs: 1_000, timeoutMs: 10_000)
        #expect(result.expired.isEmpty)
        result = table.heartbeats([("n1", 11_500), ("n2", 1_000)], nowMs: 11_500, timeoutMs: 10_000)
        #expect(result.expired == ["n2"])
        #expect(table.presence.onlineCount == 1)
        result = table.heartbeats([("n1", 13_000), ("n2", 13_000)], nowMs: 13_000, timeoutMs: 10_000)
        #expect(result.revived == ["n2"])
    }

    @Test func fullScanReplacesPresence() throws {
        var table = table()
        try join(&table, "alice", "general")
        try join(&table, "bob", "general")
        try table.applyPresence(instance: "n1", epoch: 1, .online(user: "alice", slot: 0))
        table.replacePresence(["n2": (epoch: 3, users: [("bob", 4)])])
        var plan = PlanBuffer()
        table.plan(partition: Partitioner.partition(of: "general", count: partitionCount), channel: "general", into: &plan)
        #expect(planned(plan) == ["n2": [4]])
    }

    @Test func scanThatMissesARecentlyBeatingInstanceKeepsItsUsers() throws {
        var table = table()
        try join(&table, "alice", "general")
        try join(&table, "bob", "general")
        try table.applyPresence(instance: "n1", epoch: 1, .online(user: "alice", slot: 0))
        try table.applyPresence(instance: "n2", epoch: 1, .online(user: "bob", slot: 3))
        _ = table.heartbeats([("n1", 1_000), ("n2", 5_000)], nowMs: 5_000, timeoutMs: 10_000)
        // Redis came back empty at 12 000 ms: n1's last beat is 11 s old, n2's 7 s.
        table.replacePresence([:], nowMs: 12_000, graceMs: 10_000)
        var plan = PlanBuffer()
        table.plan(partition: Partitioner.partition(of: "general", count: partitionCount), channel: "general", into: &plan)
        #expect(planned(plan) == ["n2": [3]])
        // n2 never re-registers: heartbeat expiry takes its users out.
        #expect(table.heartbeats([], nowMs: 15_001, timeoutMs: 10_000).expired == ["n2"])
        #expect(table.presence.onlineCount == 0)
        // An instance known only from a delta (no heartbeat polled yet) is kept as well.
        try table.applyPresence(instance: "n3", epoch: 1, .online(user: "alice", slot: 7))
        table.replacePresence([:], nowMs: 16_000, graceMs: 10_000)
        #expect(table.presence.onlineCount == 1)
    }

    @Test func corruptImagesAreRejectedWithoutChangingTheTable() throws {
        var table = table()
        try join(&table, "alice", "general")
        let p = Partitioner.partition(of: "general", count: partitionCount)
        let image = RoutingImage.encode(table, partition: p)
        var fresh = self.table()
        let ids = try fresh.internDictionary(of: table)
        for cut in [0, 3, 5, image.count / 2, image.count - 1] {
            #expect(throws: RoutingImage.DecodeError.self) { try RoutingImage.load(Array(image[0..<cut]), partition: p, into: &fresh, dictionary: ids) }
        }
        #expect(throws: RoutingImage.DecodeError.self) { try RoutingImage.load(image + [0], partition: p, into: &fresh, dictionary: ids) }
        #expect(throws: RoutingImage.DecodeError.self) { try RoutingImage.load(image, partition: (p + 1) % partitionCount, into: &fresh, dictionary: ids) }
        // An image needs the dictionary entries it names.
        #expect(throws: RoutingImage.DecodeError.self) { try RoutingImage.load(image, partition: p, into: &fresh, dictionary: []) }
        #expect(fresh.membershipCount == 0)
        var rng = SplitMix64(seed: 1)
        for _ in 0..<2000 {
            var noisy = image
            noisy[Int(rng.next() % UInt64(noisy.count))] = UInt8(truncatingIfNeeded: rng.next())
            var target = self.table()
            let targetIDs = try target.internDictionary(of: table)
            _ = try? RoutingImage.load(noisy, partition: p, into: &target, dictionary: targetIDs)
        }
        try RoutingImage.load(image, partition: p, into: &fresh, dictionary: ids)
        #expect(fresh.isMember(partition: p, channel: "general", user: "alice"))
    }

    /// Random joins, leaves, deletions and presence changes; the table's plans and its
    /// snapshot image must agree with the naive model after every sequence.
    @Test func agreesWithNaiveModelUnderRandomOperations() async {
        await propertyCheck(count: 150, input: Gen.int(in: 0...Int(UInt32.max)).array(of: 0...300)) { operations in
            var table = table()
            var model = NaiveRouting()
            var epochs = Dictionary(uniqueKeysWithValues: instanceNames.map { ($0, UInt64(1)) })
            var version: UInt64 = 0
            for operation in operations {
                version += 1
                let channel = channelNames[operation % channelNames.count]
                let user = userNames[(operation / 16) % userNames.count]
                let instance = instanceNames[(operation / 1024) % instanceNames.count]
                let slot = UInt32((operation / 4096) % 8)
                let partition = Partitioner.partition(of: channel, count: partitionCount)
                switch (operation / 65536) % 10 {
                case 0, 1, 2:
                    _ = try? table.applyMembership(partition: partition, channel: channel, user: user, state: .joined, version: version)
                    model.members[channel, default: []].insert(user)
                case 3, 4:
                    _ = try? table.applyMembership(partition: partition, channel: channel, user: user, state: .left, version: version)
                    model.members[channel]?.remove(user)
                case 5:
                    _ = try? table.applyMembership(partition: partition, channel: channel, user: "_", state: .channelDeleted, version: version)
                    model.members[channel] = nil
                case 6, 7:
                    _ = try? table.applyPresence(instance: instance, epoch: epochs[instance]!, .online(user: user, slot: slot))
                    model.placements[user, default: [:]][instance] = slot
                case 8:
                    _ = try? table.applyPresence(instance: instance, epoch: epochs[instance]!, .offline(user: user))
                    model.placements[user]?[instance] = nil
                default:
                    // The instance restarts: a new epoch with nobody on it yet.
                    epochs[instance]! += 1
                    _ = try? table.applyPresence(instance: instance, epoch: epochs[instance]!, .offline(user: user))
                    for key in model.placements.keys { model.placements[key]?[instance] = nil }
                }
            }
            var plan = PlanBuffer()
            var restored = self.table()
            let ids = (try? restored.internDictionary(of: table)) ?? []
            for partition in 0..<partitionCount {
                try? RoutingImage.load(RoutingImage.encode(table, partition: partition), partition: partition, into: &restored, dictionary: ids)
            }
            #expect(table.membershipCount == model.members.values.reduce(0) { $0 + $1.count })
            for channel in channelNames {
                let partition = Partitioner.partition(of: channel, count: partitionCount)
                table.plan(partition: partition, channel: channel, skipUser: "u1", into: &plan)
                #expect(planned(plan) == model.plan(channel: channel, skip: "u1"), "channel \(channel)")
                #expect(plannedPositions(plan) == model.positions(channel: channel, skip: "u1"), "positions of channel \(channel)")
                for user in userNames {
                    let member = model.members[channel]?.contains(user) ?? false
                    #expect(table.isMember(partition: partition, channel: channel, user: user) == member)
                    #expect(restored.isMember(partition: partition, channel: channel, user: user) == member)
                }
            }
        }
    }
}
