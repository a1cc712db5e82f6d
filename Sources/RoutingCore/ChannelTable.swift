/// One partition's channels: channel id → compressed member set, plus what keeps membership
/// changes idempotent and ordered by version.
///
/// Ordering: `CHAT_MEMBERSHIP` keeps one message per (channel, user), so replaying it gives
/// the current set whatever the versions. Live, a late change with a lower version than
/// one already applied to the same (channel, user) is ignored; versions are remembered for
/// the last `recentVersionLimit` changes (bounded memory), which covers publisher races.
/// A channel deletion at version v also rejects joins at or below v (no resurrection).
public struct ChannelTable: Sendable {
    /// How many (channel, user) versions are remembered for reordering checks.
    public static let recentVersionLimit = 256

    public private(set) var names = StringInterner()
    public private(set) var members: [MemberSet] = []
    /// Version of each deleted channel's deletion (sparse).
    private var deletedAt: [UInt32: UInt64] = [:]
    private var recent = RecentVersions(limit: recentVersionLimit)
    public private(set) var membershipCount = 0

    public init() {}

    public var channelCount: Int { members.count - deletedAt.count }

    /// Heap bytes of the member sets, the channel index and the channel-id strings.
    public var byteCount: Int {
        names.byteCount + members.reduce(0) { $0 + $1.byteCount } + (members.capacity - members.count) * MemoryLayout<MemberSet>.stride
            + deletedAt.capacity * 16 + recent.byteCount
    }

    public func channel(_ id: String) -> UInt32? { names.id(of: id) }

    public func members(of channel: UInt32) -> MemberSet { members[Int(channel)] }

    public func isDeleted(_ channel: UInt32) -> Bool { deletedAt[channel] != nil }

    public func deletionVersion(_ channel: UInt32) -> UInt64? { deletedAt[channel] }

    public mutating func internChannel(_ id: String) -> UInt32 {
        let index = names.intern(id)
        if Int(index) == members.count { members.append(MemberSet()) }
        return index
    }

    public enum Outcome: Sendable, Equatable {
        case applied
        /// Already in that state (a replay or a duplicate).
        case unchanged
        /// Older than a change already applied; ignored.
        case stale
    }

    public mutating func join(channel: UInt32, user: UInt32, version: UInt64) -> Outcome {
        if let deleted = deletedAt[channel] {
            guard version > deleted else { return .stale }
            deletedAt[channel] = nil
        }
        guard recent.accept(channel: channel, user: user, version: version) else { return .stale }
        guard members[Int(channel)].insert(user) else { return .unchanged }
        membershipCount += 1
        return .applied
    }

    public mutating func leave(channel: UInt32, user: UInt32, version: UInt64) -> Outcome {
        guard recent.accept(channel: channel, user: user, version: version) else { return .stale }
        guard members[Int(channel)].remove(user) else { return .unchanged }
        membershipCount -= 1
        return .applied
    }

    public mutating func delete(channel: UInt32, version: UInt64) -> Outcome {
        if let deleted = deletedAt[channel], deleted >= version { return deleted == version ? .unchanged : .stale }
        membershipCount -= Int(members[Int(channel)].count)
        members[Int(channel)] = MemberSet()
        deletedAt[channel] = version
        return .applied
    }

    /// Replaces a channel's members wholesale (loading an image).
    mutating func load(channel: UInt32, members set: MemberSet, deletedAt version: UInt64?) {
        membershipCount += Int(set.count) - Int(members[Int(channel)].count)
        members[Int(channel)] = set
        deletedAt[channel] = version
    }

    /// Drops growth slack from every member set and the channel ids (after a bulk load).
    public mutating func compact() {
        for index in members.indices { members[index].compact() }
        names.compact()
        members = members.withoutSlack()
    }
}

/// The versions of the most recent (channel, user) changes, oldest forgotten first.
///
/// A ring of the remembered pairs with an open-addressing index over it (linear probing,
/// backward-shift deletion): every membership a replay applies passes through here, and a
/// `Dictionary` hashed each pair three times (look up, insert, forget the oldest).
struct RecentVersions: Sendable {
    private let limit: Int
    private var keys: [UInt64] = []
    private var versions: [UInt64] = []
    /// The ring slot the next new pair takes once the ring is full.
    private var next = 0
    /// Ring slot + 1, or 0 for an empty bucket; at least twice `limit` buckets.
    private var index: [UInt32]
    private let shift: UInt64

    init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
        var bits = 1
        while 1 << bits < 2 * limit { bits += 1 }
        index = Array(repeating: 0, count: 1 << bits)
        shift = UInt64(64 - bits)
    }

    var byteCount: Int { keys.capacity * 8 + versions.capacity * 8 + index.capacity * 4 }

    /// False when `version` is lower than the remembered version of the same pair.
    mutating func accept(channel: UInt32, user: UInt32, version: UInt64) -> Bool {
        let key = UInt64(channel) << 32 | UInt64(user)
        var bucket = home(key)
        while index[bucket] != 0 {
            let slot = Int(index[bucket] - 1)
            if keys[slot] == key {
                guard version >= versions[slot] else { return false }
                versions[slot] = version
                return true
            }
            bucket = (bucket + 1) & (index.count - 1)
        }
        let slot: Int
        if keys.count < limit {
            slot = keys.count
            keys.append(key)
            versions.append(version)
        } else {
            slot = next
            next = (next + 1) % limit
            forget(slot)
            keys[slot] = key
            versions[slot] = version
            // Forgetting may have shifted entries into the probe path: find the free bucket again.
            bucket = home(key)
            while index[bucket] != 0 { bucket = (bucket + 1) & (index.count - 1) }
        }
        index[bucket] = UInt32(slot + 1)
        return true
    }

    private func home(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Removes ring slot `slot`'s pair from the index, shifting later entries of its probe run back.
    private mutating func forget(_ slot: Int) {
        let mask = index.count - 1
        var hole = home(keys[slot])
        while index[hole] != UInt32(slot + 1) { hole = (hole + 1) & mask }
        var probe = hole
        while true {
            probe = (probe + 1) & mask
            guard index[probe] != 0 else { break }
            let wanted = home(keys[Int(index[probe] - 1)])
            // An entry may move into the hole only if its home is not in (hole, probe] cyclically.
            let staysPut = hole <= probe ? (hole < wanted && wanted <= probe) : (hole < wanted || wanted <= probe)
            if staysPut { continue }
            index[hole] = index[probe]
            hole = probe
        }
        index[hole] = 0
    }
}
