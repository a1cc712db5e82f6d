import SwitchboardContracts

/// Where a user is connected: a notifier instance (dense index) and that notifier's local slot.
public struct Placement: Hashable, Sendable {
    public var instance: UInt32
    public var slot: UInt32

    public init(instance: UInt32, slot: UInt32) {
        self.instance = instance
        self.slot = slot
    }

    static let none = Placement(instance: .max, slot: .max)
}

/// Which users are online and where: an online bitset over user ids (the planner's first,
/// cheapest test) plus, per online user, up to two inline placements and an overflow list
/// for users on more instances. Only online users cost more than one bit.
public struct PresenceTable: Sendable {
    struct Entry: Sendable {
        var first = Placement.none
        var second = Placement.none
        /// Placements beyond two; empty (no allocation) for nearly every user.
        var more: [Placement] = []

        var isEmpty: Bool { first == .none }

        func forEach(_ body: (Placement) -> Void) {
            guard first != .none else { return }
            body(first)
            guard second != .none else { return }
            body(second)
            for placement in more { body(placement) }
        }

        func placement(on instance: UInt32) -> Placement? {
            if first.instance == instance { return first }
            if second.instance == instance { return second }
            return more.first { $0.instance == instance }
        }

        /// Sets the slot on `instance`; returns true if the user was not there before.
        mutating func set(_ placement: Placement) -> Bool {
            if first == .none || first.instance == placement.instance {
                defer { first = placement }
                return first == .none
            }
            if second == .none || second.instance == placement.instance {
                defer { second = placement }
                return second == .none
            }
            if let index = more.firstIndex(where: { $0.instance == placement.instance }) {
                more[index] = placement
                return false
            }
            more.append(placement)
            return true
        }

        /// Removes the placement on `instance`; returns true if there was one.
        mutating func remove(instance: UInt32) -> Bool {
            if first.instance == instance {
                first = second
                second = more.isEmpty ? .none : more.removeFirst()
                return true
            }
            if second.instance == instance {
                second = more.isEmpty ? .none : more.removeFirst()
                return true
            }
            if let index = more.firstIndex(where: { $0.instance == instance }) {
                more.remove(at: index)
                return true
            }
            return false
        }
    }

    private var online: [UInt64] = []
    private var entries: [UInt32: Entry] = [:]

    public init() {}

    public var onlineCount: Int { entries.count }

    public var byteCount: Int {
        online.capacity * 8 + entries.capacity * (MemoryLayout<UInt32>.stride + MemoryLayout<Entry>.stride) * 4 / 3
    }

    @inline(__always)
    public func isOnline(_ user: UInt32) -> Bool {
        let word = Int(user >> 6)
        return word < online.count && online[word] & (1 << UInt64(user & 63)) != 0
    }

    /// Calls `body` with each placement of `user` (none when offline). No allocation.
    @inline(__always)
    public func forEachPlacement(of user: UInt32, _ body: (Placement) -> Void) {
        entries[user]?.forEach(body)
    }

    public func placements(of user: UInt32) -> [Placement] {
        var result: [Placement] = []
        forEachPlacement(of: user) { result.append($0) }
        return result
    }

    public func placement(of user: UInt32, on instance: UInt32) -> Placement? {
        entries[user]?.placement(on: instance)
    }

    /// Puts `user` on `instance` at `slot` (replacing an older slot there).
    /// Returns true when the user was not on that instance before.
    @discardableResult
    public mutating func setOnline(_ user: UInt32, _ placement: Placement) -> Bool {
        let word = Int(user >> 6)
        if word >= online.count { online.append(contentsOf: repeatElement(0, count: max(word + 1 - online.count, online.count / 2))) }
        online[word] |= 1 << UInt64(user & 63)
        return entries[user, default: Entry()].set(placement)
    }

    /// Removes `user` from `instance`; the user goes offline with their last placement.
    @discardableResult
    public mutating func setOffline(_ user: UInt32, instance: UInt32) -> Bool {
        guard var entry = entries[user], entry.remove(instance: instance) else { return false }
        if entry.isEmpty {
            entries[user] = nil
            online[Int(user >> 6)] &= ~(1 << UInt64(user & 63))
        } else {
            entries[user] = entry
        }
        return true
    }

    /// Removes every placement on `instance` (it restarted, drained or stopped heartbeating).
    /// Returns the number of users that were on it.
    @discardableResult
    public mutating func removeInstance(_ instance: UInt32) -> Int {
        var users: [UInt32] = []
        for (user, entry) in entries where entry.placement(on: instance) != nil { users.append(user) }
        for user in users { setOffline(user, instance: instance) }
        return users.count
    }

    public mutating func removeAll() {
        online.removeAll()
        entries.removeAll()
    }
}

/// The notifier instances the table knows: dense indices for placements, the epoch of each
/// instance's current process, its last heartbeat and its inbox subject (built once).
public struct InstanceRegistry: Sendable {
    public struct Instance: Sendable {
        public let id: String
        public let inboxSubject: String
        /// Epoch of the process whose presence the table holds.
        public var epoch: UInt64 = 0
        /// Deltas at or below this epoch are ignored: that process announced it is gone or
        /// was expired. Zero: not down.
        public var downAtEpoch: UInt64 = 0
        public var lastHeartbeatMs: Int64 = 0
        public var users = 0

        public var isDown: Bool { downAtEpoch != 0 && downAtEpoch >= epoch }
    }

    private var names = StringInterner()
    public private(set) var all: [Instance] = []

    public init() {}

    public var count: Int { all.count }

    public mutating func intern(_ id: String) -> UInt32 {
        let index = names.intern(id)
        if Int(index) == all.count { all.append(Instance(id: id, inboxSubject: Subjects.inbox(instance: id))) }
        return index
    }

    public func index(of id: String) -> UInt32? { names.id(of: id) }

    public subscript(index: UInt32) -> Instance {
        get { all[Int(index)] }
        set { all[Int(index)] = newValue }
    }
}
