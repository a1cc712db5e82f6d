@testable import RoutingCore
import SwitchboardContracts
import Testing
import SwitchboardHarness

/// The routing-table image is read back from `ROUTING_SNAPSHOTS` at cold start: bytes another
/// process wrote, possibly a corrupt or hostile one. Fuzzed from real images and from images
/// generated field by field (see FuzzDriver.swift for seeds and time boxes).
@Suite struct RoutingImageFuzzTests {
    static let partitionCount = 4
    static let partition = 1

    /// Channel ids that land in `partition`, found once.
    static let channels: [String] = {
        var names: [String] = []
        var index = 0
        while names.count < 8 {
            let name = "room\(index)"
            if Partitioner.partition(of: name, count: partitionCount) == partition { names.append(name) }
            index += 1
        }
        return names
    }()

    static func emptyTable() -> RoutingTable { RoutingTable(partitions: Array(0..<partitionCount), partitionCount: partitionCount) }

    static func table(users: Int, perChannel: Int, seed: UInt64) throws -> RoutingTable {
        var table = emptyTable()
        var random = FuzzRandom(seed: seed)
        for (index, channel) in channels.enumerated() {
            for _ in 0..<perChannel {
                let user = "user\(random.next() % UInt64(users))"
                _ = try table.applyMembership(partition: partition, channel: channel, user: user, state: .joined, version: 1)
            }
            if index == 3 { _ = try table.applyMembership(partition: partition, channel: channel, user: "_", state: .channelDeleted, version: 9) }
        }
        return table
    }

    @Test func imageDecoderNeverTrapsAndLeavesTheTableAloneWhenItRejects() throws {
        let corpus = [
            RoutingImage.encode(Self.emptyTable(), partition: Self.partition),
            RoutingImage.encode(try Self.table(users: 5, perChannel: 3, seed: 1), partition: Self.partition),
            RoutingImage.encode(try Self.table(users: 300, perChannel: 40, seed: 2), partition: Self.partition),
            RoutingImage.encode(try Self.table(users: 1000, perChannel: 120, seed: 3), partition: Self.partition),
        ]
        // A table already holding data: a rejected image must not change it. Its own users
        // are the dictionary version 2 images refer to.
        let resident = try Self.table(users: 50, perChannel: 10, seed: 4)
        let residentImage = RoutingImage.encode(resident, partition: Self.partition)
        let residentIDs = Array(0..<UInt32(resident.users.count))
        let result = FuzzDriver.run("RoutingImage", corpus: corpus, generate: ImageGenerator.generate) { bytes in
            var target = resident
            do {
                try RoutingImage.load(bytes, partition: Self.partition, into: &target, dictionary: residentIDs)
            } catch {
                guard RoutingImage.encode(target, partition: Self.partition) == residentImage, target.membershipCount == resident.membershipCount else {
                    return .violation("a rejected image (\(error)) changed the table")
                }
                return .rejected
            }
            // What was accepted survives its own round trip unchanged.
            let written = RoutingImage.encode(target, partition: Self.partition)
            var again = Self.emptyTable()
            do {
                let ids = try again.internDictionary(of: target)
                try RoutingImage.load(written, partition: Self.partition, into: &again, dictionary: ids)
            } catch {
                return .violation("the image of an accepted image does not load: \(error)")
            }
            guard RoutingImage.encode(again, partition: Self.partition) == written else { return .violation("round trip changed the table") }
            return target.membershipCount <= bytes.count ? .accepted : .violation("\(target.membershipCount) memberships from \(bytes.count) bytes")
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
        #expect(result.report.residentGrowthBytes < 128 << 20, "\(result.report)")
    }

    // Regression inputs from this fuzzer: both used to trap inside `RoutingImage.load`.

    /// A member gap of 2^64-1 after a first member: `local + gap + 1` overflowed (trap).
    @Test func memberGapNear2To64IsRejectedNotAnOverflow() {
        var image = ImageGenerator.header(partition: Self.partition)
        ImageGenerator.users(["alice", "bob"], into: &image)
        image += [1]  // one channel
        ImageGenerator.string(Self.channels[0], into: &image)
        image += [0, 2, 0]  // not deleted, two members, the first at index 0
        image += FuzzMutator.hugeVarints[3]  // the second's gap: 2^64-1
        var table = Self.emptyTable()
        #expect(throws: RoutingImage.DecodeError.self) { try RoutingImage.load(image, partition: Self.partition, into: &table) }
        #expect(table.membershipCount == 0)
    }

    /// A user listed twice: two members mapped to one interned id and `MemberSet` trapped on
    /// the non-ascending append.
    @Test func userListedTwiceIsRejectedNotATrap() {
        var image = ImageGenerator.header(partition: Self.partition)
        ImageGenerator.users(["alice", "alice"], into: &image)
        image += [1]
        ImageGenerator.string(Self.channels[0], into: &image)
        image += [0, 2, 0, 0]  // members at index 0 and 1: both "alice"
        var table = Self.emptyTable()
        #expect(throws: RoutingImage.DecodeError.invalid("channel '\(Self.channels[0])' lists a user twice (duplicate user ids)")) {
            try RoutingImage.load(image, partition: Self.partition, into: &table)
        }
        // The same user twice without a channel naming both is harmless and loads.
        var harmless = ImageGenerator.header(partition: Self.partition)
        ImageGenerator.users(["alice", "alice"], into: &harmless)
        harmless += [1]
        ImageGenerator.string(Self.channels[0], into: &harmless)
        harmless += [0, 1, 1]
        #expect(throws: Never.self) { try RoutingImage.load(harmless, partition: Self.partition, into: &table) }
        #expect(table.isMember(partition: Self.partition, channel: Self.channels[0], user: "alice"))
    }

    /// Counts that claim more items than the image has bytes are refused before anything is
    /// reserved for them.
    @Test func countsLargerThanTheImageAreRejectedUpFront() {
        for huge in FuzzMutator.hugeVarints {
            var users = ImageGenerator.header(partition: Self.partition)
            users += huge
            var channels = ImageGenerator.header(partition: Self.partition)
            channels += [0] + huge
            var table = Self.emptyTable()
            for image in [users, channels] {
                #expect(throws: RoutingImage.DecodeError.self) { try RoutingImage.load(image, partition: Self.partition, into: &table) }
            }
        }
    }
}

/// Version 2 images and the user dictionary they refer to.
@Suite struct UserDictionaryTests {
    @Test func imagesNameNoUserAndRoundTripThroughADictionaryCutIntoSegments() throws {
        let table = try RoutingImageFuzzTests.table(users: 3000, perChannel: 400, seed: 5)
        let image = RoutingImage.encode(table, partition: RoutingImageFuzzTests.partition)
        #expect(image.firstRange(of: Array("user17".utf8)) == nil, "a version 2 image lists no user id")
        var segments: [[UInt8]] = []
        var first = 0
        repeat {
            let (bytes, end) = UserDictionary.segment(of: table.users, lineage: 42, from: first, maxBytes: 2_000)
            #expect(bytes.count <= 2_000 && end > first)
            segments.append(bytes)
            first = end
        } while first < table.users.count
        #expect(segments.count > 3)
        var restored = RoutingImageFuzzTests.emptyTable()
        var ids: [UInt32] = []
        for bytes in segments { ids += restored.internUsers(of: try UserDictionary.decode(bytes, lineage: 42, first: ids.count)) }
        try RoutingImage.load(image, partition: RoutingImageFuzzTests.partition, into: &restored, dictionary: ids)
        #expect(RoutingImage.encode(restored, partition: RoutingImageFuzzTests.partition) == image)
        #expect(restored.membershipCount == table.membershipCount)
    }

    /// A process that interned other users first maps the dictionary to its own ids.
    @Test func aDictionaryLoadsIntoATableThatAlreadyHasUsers() throws {
        let table = try RoutingImageFuzzTests.table(users: 40, perChannel: 12, seed: 6)
        let image = RoutingImage.encode(table, partition: RoutingImageFuzzTests.partition)
        var restored = RoutingImageFuzzTests.emptyTable()
        for user in ["user39", "zed", "user3"] { _ = restored.users.intern(user) }
        let ids = try restored.internDictionary(of: table)
        try RoutingImage.load(image, partition: RoutingImageFuzzTests.partition, into: &restored, dictionary: ids)
        for channel in RoutingImageFuzzTests.channels {
            for user in (0..<40).map({ "user\($0)" }) {
                #expect(restored.isMember(partition: RoutingImageFuzzTests.partition, channel: channel, user: user)
                        == table.isMember(partition: RoutingImageFuzzTests.partition, channel: channel, user: user))
            }
        }
    }

    @Test func segmentsOfAnotherLineageOrPositionOrWithBadIdsAreRejected() throws {
        var users = StringInterner()
        for name in ["alice", "bob", "carol"] { _ = users.intern(name) }
        let (segment, end) = UserDictionary.segment(of: users, lineage: 7, from: 1, maxBytes: 1_000)
        #expect(end == 3)
        #expect(try UserDictionary.decode(segment, lineage: 7, first: 1).end == 3)
        #expect(throws: RoutingImage.DecodeError.self) { try UserDictionary.decode(segment, lineage: 8, first: 1) }
        #expect(throws: RoutingImage.DecodeError.self) { try UserDictionary.decode(segment, lineage: 7, first: 0) }
        #expect(throws: RoutingImage.DecodeError.self) { try UserDictionary.decode(segment + [0], lineage: 7, first: 1) }
        #expect(throws: RoutingImage.DecodeError.self) { try UserDictionary.decode(Array(segment.dropLast()), lineage: 7, first: 1) }
        var badID = Array("SBUD".utf8) + [1, 7, 0, 1, 6] + Array("bad id".utf8)
        #expect(throws: RoutingImage.DecodeError.invalid("user id 'bad id'")) { try UserDictionary.decode(badID, lineage: 7, first: 0) }
        badID[5] = 200  // a count beyond the segment's bytes
        #expect(throws: RoutingImage.DecodeError.self) { try UserDictionary.decode(badID, lineage: 7, first: 0) }
    }

    @Test func anImageNeedingMoreUsersThanTheDictionaryHoldsIsRejected() throws {
        let table = try RoutingImageFuzzTests.table(users: 20, perChannel: 5, seed: 7)
        let image = RoutingImage.encode(table, partition: RoutingImageFuzzTests.partition)
        var restored = RoutingImageFuzzTests.emptyTable()
        let ids = try restored.internDictionary(of: table)
        #expect(throws: RoutingImage.DecodeError.invalid("\(ids.count - 1) user ids for \(ids.count) users")) {
            try RoutingImage.load(image, partition: RoutingImageFuzzTests.partition, into: &restored, dictionary: Array(ids.dropLast()))
        }
        #expect(restored.membershipCount == 0)
    }
}

extension RoutingTable {
    /// Interns `source`'s users as a snapshot loader does from its dictionary; returns the ids.
    mutating func internDictionary(of source: RoutingTable) throws -> [UInt32] {
        var ids: [UInt32] = []
        repeat {
            let (bytes, end) = UserDictionary.segment(of: source.users, lineage: 1, from: ids.count, maxBytes: 4_096)
            ids += internUsers(of: try UserDictionary.decode(bytes, lineage: 1, first: ids.count))
            precondition(ids.count == end)
        } while ids.count < source.users.count
        return ids
    }
}

/// Images written field by field, each field valid or broken at random: the decoder's
/// checks are reached far more often than byte mutations alone would reach them.
enum ImageGenerator {
    /// A version 1 header (the image lists its own users).
    static func header(partition: Int) -> [UInt8] { Array("SBRT".utf8) + [1, UInt8(partition)] }

    static func varint(_ value: UInt64, into bytes: inout [UInt8]) { Varint.append(value, to: &bytes) }

    static func string(_ string: String, into bytes: inout [UInt8]) {
        varint(UInt64(string.utf8.count), into: &bytes)
        bytes += string.utf8
    }

    static func users(_ users: [String], into bytes: inout [UInt8]) {
        varint(UInt64(users.count), into: &bytes)
        for user in users { string(user, into: &bytes) }
    }

    static func generate(_ random: inout FuzzRandom, _ corpus: [[UInt8]]) -> [UInt8] {
        var bytes = header(partition: random.chance(20) ? 2 : RoutingImageFuzzTests.partition)
        var userCount = Int(random.next() % 12)
        if random.chance(2) {
            // Version 2: members are ids of the resident table's dictionary (about 50 users).
            bytes[4] = 2
            userCount = Int(random.next() % 60)
            varint(random.chance(15) ? random.next() : UInt64(userCount), into: &bytes)
        } else {
            let names = ["alice", "bob", "carol", "dave", "erin", "bad id", "", String(repeating: "x", count: 65), "ü", "alice"]
            var users: [String] = []
            for index in 0..<userCount { users.append(random.chance(6) ? names[Int(random.next() % UInt64(names.count))] : "u\(index)") }
            varint(random.chance(15) ? random.next() : UInt64(users.count), into: &bytes)
            for user in users {
                if random.chance(25) { bytes += [0xc3, 0x28] } else { string(user, into: &bytes) }
            }
        }
        let channelCount = Int(random.next() % 4)
        varint(random.chance(15) ? random.next() : UInt64(channelCount), into: &bytes)
        for _ in 0..<channelCount {
            let channels = RoutingImageFuzzTests.channels
            string(random.chance(10) ? "room-elsewhere" : channels[Int(random.next() % UInt64(channels.count))], into: &bytes)
            varint(random.chance(4) ? random.next() % 10 : 0, into: &bytes)  // deletion version + 1
            let members = Int(random.next() % UInt64(max(1, userCount + 2)))
            varint(random.chance(15) ? random.next() : UInt64(members), into: &bytes)
            for index in 0..<members {
                let gap: UInt64 = random.chance(12) ? random.next() : random.chance(3) ? 0 : random.next() % UInt64(max(1, userCount - index))
                varint(gap, into: &bytes)
            }
        }
        if random.chance(10) { bytes.append(0) }  // trailing byte
        return random.chance(4) ? FuzzMutator.mutate(bytes, corpus: corpus, using: &random) : bytes
    }
}
