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
        var reader = Reader(bytes: image)
        guard image.count > magic.count, Array(image[0..<magic.count]) == magic, image[magic.count] == version else { throw .badHeader }
        reader.offset = magic.count + 1
        let imagePartition = try reader.varint()
        guard imagePartition == UInt64(partition) else { throw .invalid("written for partition \(imagePartition), not \(partition)") }

        let userCount = try reader.count(limit: image.count)
        var userStrings: [String] = []
        userStrings.reserveCapacity(userCount)
        for _ in 0..<userCount {
            let user = try reader.string()
            guard Identifier.isValid(user) else { throw .invalid("user id '\(user.prefix(80))'") }
            userStrings.append(user)
        }
        var channelTable = ChannelTable()
        var users = table.users
        let globalOfLocal = userStrings.map { users.intern($0) }
        let channelCount = try reader.count(limit: image.count)
        var scratch: [UInt32] = []
        for _ in 0..<channelCount {
            let name = try reader.string()
            guard Identifier.isValid(name), Partitioner.partition(of: name, count: table.partitionCount) == partition else {
                throw .invalid("channel '\(name.prefix(80))' does not belong to partition \(partition)")
            }
            let deleted = try reader.varint()
            let memberCount = try reader.count(limit: image.count)
            scratch.removeAll(keepingCapacity: true)
            var local: UInt64 = 0
            for index in 0..<memberCount {
                let gap = try reader.varint()
                // Checked before adding: a gap near 2^64 must not overflow into a small index.
                guard gap < UInt64(globalOfLocal.count) else { throw .invalid("member gap \(gap) beyond \(globalOfLocal.count) users") }
                local = index == 0 ? gap : local + gap + 1
                guard local < UInt64(globalOfLocal.count) else { throw .invalid("member index \(local) beyond \(globalOfLocal.count) users") }
                scratch.append(globalOfLocal[Int(local)])
            }
            // Global ids ascend with local ones unless this process interned users earlier.
            if !isAscending(scratch) {
                scratch.sort()
                // Only a user listed twice in the image maps two members to one id.
                guard isAscending(scratch) else { throw .invalid("channel '\(name)' lists a user twice (duplicate user ids)") }
            }
            let channel = channelTable.internChannel(name)
            guard Int(channel) == channelTable.members.count - 1 else { throw .invalid("channel '\(name)' listed twice") }
            channelTable.load(channel: channel, members: MemberSet(sorted: scratch), deletedAt: deleted == 0 ? nil : deleted - 1)
        }
        guard reader.offset == image.count else { throw .invalid("\(image.count - reader.offset) trailing bytes") }
        channelTable.compact()
        table.users = users
        table.partitions[partition] = channelTable
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
            let length = try count(limit: bytes.count)
            guard length <= bytes.count - offset else { throw .truncated(at: offset) }
            defer { offset += length }
            return String(decoding: bytes[offset..<(offset + length)], as: UTF8.self)
        }
    }
}
