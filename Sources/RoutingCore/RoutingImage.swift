import SwitchboardContracts

/// A partition's channel table as bytes, for snapshots: self-contained (user ids as
/// strings, since interned indices are per process) and compact (members delta-coded).
///
/// Layout (all integers LEB128 varints):
/// `"SBRT" 1` · partition · userCount · users (length, UTF-8)… · channelCount ·
/// channels (length, UTF-8, deletedVersion + 1 or 0, memberCount, member gaps…)…
/// where members are indices into the image's user list, ascending, each as the gap to the
/// previous one minus one (the first as is).
public enum RoutingImage {
    static let magic: [UInt8] = Array("SBRT".utf8)
    static let version: UInt8 = 1

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

    /// Serializes `partition` of `table`.
    public static func encode(_ table: RoutingTable, partition: Int) -> [UInt8] {
        guard let channels = table.partitions[partition] else { return header(partition) + [0, 0] }
        // The users this partition references, in global id order, renumbered densely.
        var referenced = Set<UInt32>()
        for set in channels.members { set.forEach { referenced.insert($0) } }
        let globalIDs = referenced.sorted()
        var local = [UInt32: UInt32](minimumCapacity: globalIDs.count)
        for (index, id) in globalIDs.enumerated() { local[id] = UInt32(index) }

        var bytes = header(partition)
        bytes.reserveCapacity(globalIDs.count * 12 + channels.membershipCount * 2)
        Varint.append(UInt64(globalIDs.count), to: &bytes)
        for id in globalIDs { appendString(table.users.string(id), to: &bytes) }
        Varint.append(UInt64(channels.members.count), to: &bytes)
        for index in channels.members.indices {
            let channel = UInt32(index)
            appendString(channels.names.string(channel), to: &bytes)
            Varint.append(channels.deletionVersion(channel).map { $0 + 1 } ?? 0, to: &bytes)
            let set = channels.members[index]
            Varint.append(UInt64(set.count), to: &bytes)
            var previous: UInt32?
            set.forEach { user in
                // Global order is preserved by the renumbering, so local ids ascend too.
                let id = local[user]!
                Varint.append(previous.map { id - $0 - 1 } ?? id, to: &bytes)
                previous = id
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

    /// Replaces `partition` of `table` with the image's content. Validates everything it
    /// reads: a corrupt image throws and leaves the table unchanged.
    public static func load(_ image: [UInt8], partition: Int, into table: inout RoutingTable) throws(DecodeError) {
        guard table.partitions[partition] != nil else { throw .invalid("partition \(partition) is not owned") }
        let decoded = try decode(image, partition: partition, partitionCount: table.partitionCount)
        var users = table.users
        let channels = try decoded.channelTable(globalUserIDs: decoded.intern(into: &users))
        table.users = users
        table.partitions[partition] = channels
    }

    /// Reads and checks a whole image without any table, so that images decode side by side;
    /// only `Decoded.intern` needs the (shared) user interner.
    public static func decode(_ image: [UInt8], partition: Int, partitionCount: Int) throws(DecodeError) -> Decoded {
        var reader = Reader(bytes: image)
        guard image.count > magic.count, Array(image[0..<magic.count]) == magic, image[magic.count] == version else { throw .badHeader }
        reader.offset = magic.count + 1
        let imagePartition = try reader.varint()
        guard imagePartition == UInt64(partition) else { throw .invalid("written for partition \(imagePartition), not \(partition)") }

        let userCount = try reader.count(limit: image.count)
        var users: [Range<Int>] = []
        users.reserveCapacity(userCount)
        for _ in 0..<userCount {
            let range = try reader.stringRange()
            guard image.withUnsafeBufferPointer({ Identifier.isValid(UnsafeBufferPointer(rebasing: $0[range])) }) else {
                throw .invalid("user id '\(String(decoding: image[range].prefix(80), as: UTF8.self))'")
            }
            users.append(range)
        }
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
            var local: UInt64 = 0
            for index in 0..<memberCount {
                let gap = try reader.varint()
                // Checked before adding: a gap near 2^64 must not overflow into a small index.
                guard gap < UInt64(users.count) else { throw .invalid("member gap \(gap) beyond \(users.count) users") }
                local = index == 0 ? gap : local + gap + 1
                guard local < UInt64(users.count) else { throw .invalid("member index \(local) beyond \(users.count) users") }
                members.append(UInt32(local))
            }
            channels.append(Decoded.Channel(name: name, deletedAt: deleted == 0 ? nil : deleted - 1, members: members))
        }
        guard reader.offset == image.count else { throw .invalid("\(image.count - reader.offset) trailing bytes") }
        return Decoded(partition: partition, image: image, users: users, channels: channels)
    }

    /// A checked image: its user ids (as ranges of the image) and channels with members as
    /// indices into that user list (ascending, in range).
    public struct Decoded: Sendable {
        public let partition: Int
        let image: [UInt8]
        let users: [Range<Int>]
        let channels: [Channel]

        struct Channel: Sendable {
            var name: String
            var deletedAt: UInt64?
            var members: [UInt32]
        }

        /// Interns the image's users; returns their ids, in image order.
        public func intern(into interner: inout StringInterner) -> [UInt32] {
            image.withUnsafeBufferPointer { bytes in
                users.map { interner.intern(bytes: UnsafeBufferPointer(rebasing: bytes[$0])) }
            }
        }

        /// The partition's channel table, given the ids `intern` returned.
        public func channelTable(globalUserIDs global: [UInt32]) throws(DecodeError) -> ChannelTable {
            guard global.count == users.count else { throw .invalid("\(global.count) user ids for \(users.count) users") }
            var table = ChannelTable()
            var scratch: [UInt32] = []
            for channel in channels {
                scratch.removeAll(keepingCapacity: true)
                for local in channel.members { scratch.append(global[Int(local)]) }
                // Global ids ascend with local ones unless this process interned users earlier.
                if !RoutingImage.isAscending(scratch) {
                    scratch.sort()
                    // Only a user listed twice in the image maps two members to one id.
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

        mutating func stringRange() throws(DecodeError) -> Range<Int> {
            let length = try count(limit: bytes.count)
            guard length <= bytes.count - offset else { throw .truncated(at: offset) }
            defer { offset += length }
            return offset..<(offset + length)
        }
    }
}

extension RoutingTable {
    /// Interns a decoded image's users (see `RoutingImage.Decoded.intern`).
    public mutating func internUsers(of image: RoutingImage.Decoded) -> [UInt32] {
        image.intern(into: &users)
    }

    /// Replaces an owned partition's channel table (built by `RoutingImage.Decoded.channelTable`).
    public mutating func install(_ channels: ChannelTable, partition: Int) throws(RoutingImage.DecodeError) {
        guard partitions[partition] != nil else { throw .invalid("partition \(partition) is not owned") }
        partitions[partition] = channels
    }
}
