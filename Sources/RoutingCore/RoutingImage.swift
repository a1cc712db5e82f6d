import SwitchboardContracts

/// A partition's channel table as bytes, for snapshots: compact (members delta-coded) and
/// checked on load.
///
/// Layout, version 2 (all integers LEB128 varints):
/// `"SBRT" 2` · partition · dictionaryUsers · channelCount ·
/// channels (length, UTF-8, deletedVersion + 1 or 0, memberCount, member gaps…)…
/// where members are ids of the writer's `UserDictionary` (all below dictionaryUsers),
/// ascending, each as the gap to the previous one minus one (the first as is).
///
/// Version 1, still read, listed its own users instead: `"SBRT" 1` · partition · userCount ·
/// users (length, UTF-8)… · channels as above, members as indices into that list.
public enum RoutingImage {
    static let magic: [UInt8] = Array("SBRT".utf8)
    static let version: UInt8 = 2
    static let selfContained: UInt8 = 1

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case badHeader
        case truncated(at: Int)
        case invalid(String)

        public var description: String {
            switch self {
            case .badHeader: "not a routing image (bad magic or version)"
            case .truncated(let offset): "routing image truncated at byte \(offset)"
            case .invalid(let why): "routing image invalid: \(why)"
            }
        }
    }

    /// Serializes `partition` of `table`; its members are ids of `table.users`, whose first
    /// `table.users.count` entries the image's dictionary must hold.
    public static func encode(_ table: RoutingTable, partition: Int) -> [UInt8] {
        var bytes = header(partition)
        Varint.append(UInt64(table.users.count), to: &bytes)
        guard let channels = table.partitions[partition] else { return bytes + [0] }
        bytes.reserveCapacity(bytes.count + channels.members.count * 12 + channels.membershipCount * 2)
        Varint.append(UInt64(channels.members.count), to: &bytes)
        for index in channels.members.indices {
            let channel = UInt32(index)
            appendString(channels.names.string(channel), to: &bytes)
            Varint.append(channels.deletionVersion(channel).map { $0 + 1 } ?? 0, to: &bytes)
            let set = channels.members[index]
            Varint.append(UInt64(set.count), to: &bytes)
            var previous: UInt32?
            set.forEach { user in
                Varint.append(previous.map { user - $0 - 1 } ?? user, to: &bytes)
                previous = user
            }
        }
        return bytes
    }

    private static func header(_ partition: Int) -> [UInt8] {
        var bytes = magic + [version]
        Varint.append(UInt64(partition), to: &bytes)
        return bytes
    }

    private static func appendString(_ string: String, to bytes: inout [UInt8]) {
        Varint.append(UInt64(string.utf8.count), to: &bytes)
        bytes.append(contentsOf: string.utf8)
    }

    /// Replaces `partition` of `table` with the image's content. `dictionary` maps the
    /// writer's dictionary ids to ids of `table.users` (a version 1 image needs none).
    /// Validates everything it reads: a corrupt image throws and leaves the table unchanged.
    public static func load(_ image: [UInt8], partition: Int, into table: inout RoutingTable, dictionary: [UInt32] = []) throws(DecodeError) {
        guard table.partitions.owns(partition) else { throw .invalid("partition \(partition) is not owned") }
        let decoded = try decode(image, partition: partition, partitionCount: table.partitionCount)
        var users = table.users
        let ids = decoded.dictionaryUsers == nil ? decoded.intern(into: &users) : dictionary
        let channels = try decoded.channelTable(userIDs: ids)
        table.users = users
        table.partitions[partition] = channels
    }

    /// Reads and checks a whole image without any table, so that images decode side by side;
    /// only interning a version 1 image's own users (`Decoded.intern`) needs the shared interner.
    public static func decode(_ image: [UInt8], partition: Int, partitionCount: Int) throws(DecodeError) -> Decoded {
        var reader = Reader(bytes: image)
        guard image.count > magic.count, Array(image[0..<magic.count]) == magic, [version, selfContained].contains(image[magic.count]) else { throw .badHeader }
        let listsUsers = image[magic.count] == selfContained
        reader.offset = magic.count + 1
        let imagePartition = try reader.varint()
        guard imagePartition == UInt64(partition) else { throw .invalid("written for partition \(imagePartition), not \(partition)") }

        var users: [Range<Int>] = []
        var dictionaryUsers: Int?
        if listsUsers {
            users = try reader.userIDs()
        } else {
            let count = try reader.varint()
            guard count <= UInt64(UInt32.max) else { throw .invalid("dictionary of \(count) users") }
            dictionaryUsers = Int(count)
        }
        let bound = UInt64(dictionaryUsers ?? users.count)
        let channelCount = try reader.count(limit: image.count)
        var channels: [Decoded.Channel] = []
        channels.reserveCapacity(channelCount)
        for _ in 0..<channelCount {
            let name = try reader.string()
            guard Identifier.isValid(name), Partitioner.partition(of: name, count: partitionCount) == partition else {
                throw .invalid("channel '\(name.prefix(80))' does not belong to partition \(partition)")
            }
            let deleted = try reader.varint()
            let memberCount = try reader.count(limit: image.count)
            var members: [UInt32] = []
            members.reserveCapacity(memberCount)
            var member: UInt64 = 0
            for index in 0..<memberCount {
                let gap = try reader.varint()
                // Checked before adding: a gap near 2^64 must not overflow into a small index.
                guard gap < bound else { throw .invalid("member gap \(gap) beyond \(bound) users") }
                member = index == 0 ? gap : member + gap + 1
                guard member < bound else { throw .invalid("member index \(member) beyond \(bound) users") }
                members.append(UInt32(member))
            }
            channels.append(Decoded.Channel(name: name, deletedAt: deleted == 0 ? nil : deleted - 1, members: members))
        }
        guard reader.offset == image.count else { throw .invalid("\(image.count - reader.offset) trailing bytes") }
        return Decoded(partition: partition, dictionaryUsers: dictionaryUsers, image: image, users: users, channels: channels)
    }

    /// A checked image: channels with members as ids of the writer's dictionary (version 2)
    /// or as indices into the image's own user list (version 1), ascending and in range.
    public struct Decoded: Sendable {
        public let partition: Int
        /// The dictionary entries the image needs (version 2); nil when it lists its own users.
        public let dictionaryUsers: Int?
        let image: [UInt8]
        let users: [Range<Int>]
        let channels: [Channel]

        struct Channel: Sendable {
            var name: String
            var deletedAt: UInt64?
            var members: [UInt32]
        }

        /// Interns a version 1 image's own users; returns their ids, in image order.
        public func intern(into interner: inout StringInterner) -> [UInt32] {
            image.withUnsafeBufferPointer { bytes in
                users.map { interner.intern(bytes: UnsafeBufferPointer(rebasing: bytes[$0])) }
            }
        }

        /// The partition's channel table, given the table ids of the image's members: the
        /// dictionary's (version 2) or what `intern` returned (version 1).
        public func channelTable(userIDs ids: [UInt32]) throws(DecodeError) -> ChannelTable {
            let needed = dictionaryUsers ?? users.count
            guard ids.count >= needed else { throw .invalid("\(ids.count) user ids for \(needed) users") }
            var table = ChannelTable()
            var scratch: [UInt32] = []
            for channel in channels {
                scratch.removeAll(keepingCapacity: true)
                for member in channel.members { scratch.append(ids[Int(member)]) }
                // Table ids ascend with the image's unless this process interned users earlier.
                if !RoutingImage.isAscending(scratch) {
                    scratch.sort()
                    // Only a user listed twice maps two members to one id.
                    guard RoutingImage.isAscending(scratch) else { throw .invalid("channel '\(channel.name)' lists a user twice (duplicate user ids)") }
                }
                let index = table.internChannel(channel.name)
                guard Int(index) == table.members.count - 1 else { throw .invalid("channel '\(channel.name)' listed twice") }
                table.load(channel: index, members: MemberSet(sorted: scratch), deletedAt: channel.deletedAt)
            }
            return table
        }
    }

    private static func isAscending(_ values: [UInt32]) -> Bool {
        var previous: UInt32?
        for value in values {
            if let previous, value <= previous { return false }
            previous = value
        }
        return true
    }

    /// Bounds-checked reading of untrusted bytes.
    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func varint() throws(DecodeError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard offset < bytes.count else { throw .truncated(at: offset) }
                let byte = bytes[offset]
                offset += 1
                guard shift < 64 else { throw .invalid("varint too long at byte \(offset)") }
                value |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
        }

        /// A count that cannot exceed `limit` (each counted item takes at least one byte).
        mutating func count(limit: Int) throws(DecodeError) -> Int {
            let value = try varint()
            guard value <= UInt64(limit) else { throw .invalid("count \(value) larger than the image") }
            return Int(value)
        }

        mutating func string() throws(DecodeError) -> String {
            String(decoding: bytes[try stringRange()], as: UTF8.self)
        }

        /// A count, then that many user ids (length, UTF-8), each checked: their ranges.
        mutating func userIDs() throws(DecodeError) -> [Range<Int>] {
            let count = try count(limit: bytes.count)
            var users: [Range<Int>] = []
            users.reserveCapacity(count)
            for _ in 0..<count {
                let range = try stringRange()
                guard bytes.withUnsafeBufferPointer({ Identifier.isValid(UnsafeBufferPointer(rebasing: $0[range])) }) else {
                    throw .invalid("user id '\(String(decoding: bytes[range].prefix(80), as: UTF8.self))'")
                }
                users.append(range)
            }
            return users
        }

        mutating func stringRange() throws(DecodeError) -> Range<Int> {
            let length = try count(limit: bytes.count)
            guard length <= bytes.count - offset else { throw .truncated(at: offset) }
            defer { offset += length }
            return offset..<(offset + length)
        }
    }
}

extension RoutingTable {
    /// Interns a version 1 image's users (see `RoutingImage.Decoded.intern`).
    public mutating func internUsers(of image: RoutingImage.Decoded) -> [UInt32] {
        image.intern(into: &users)
    }

    /// Interns a dictionary segment's users; returns their ids, in order.
    public mutating func internUsers(of segment: UserDictionary.Segment) -> [UInt32] {
        segment.intern(into: &users)
    }

    /// Replaces an owned partition's channel table (built by `RoutingImage.Decoded.channelTable`).
    public mutating func install(_ channels: ChannelTable, partition: Int) throws(RoutingImage.DecodeError) {
        guard partitions.owns(partition) else { throw .invalid("partition \(partition) is not owned") }
        partitions[partition] = channels
    }
}
