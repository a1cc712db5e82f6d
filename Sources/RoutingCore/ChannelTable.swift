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

    /// Drops growth slack from every member set (after a bulk load).
    public mutating func compact() {
        for index in members.indices { members[index].compact() }
    }
}

/// The versions of the most recent (channel, user) changes, oldest forgotten first.
struct RecentVersions: Sendable {
    private let limit: Int
    private var versions: [UInt64: UInt64] = [:]
    private var order: [UInt64] = []
    private var next = 0

    init(limit: Int) { self.limit = limit }

    var byteCount: Int { versions.capacity * 24 + order.capacity * 8 }

    /// False when `version` is lower than the remembered version of the same pair.
    mutating func accept(channel: UInt32, user: UInt32, version: UInt64) -> Bool {
        let key = UInt64(channel) << 32 | UInt64(user)
        if let known = versions[key] {
            guard version >= known else { return false }
            versions[key] = version
            return true
        }
        if order.count < limit {
            order.append(key)
        } else {
            versions[order[next]] = nil
            order[next] = key
            next = (next + 1) % limit
        }
        versions[key] = version
        return true
    }
}
