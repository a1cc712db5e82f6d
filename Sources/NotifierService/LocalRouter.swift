/// The notifier's local routing table: user → one dense slot → that user's open sockets.
///
/// A slot is the number the fan-out puts into a `Delivery` for this instance (DESIGN:
/// Presence). It is allocated when a user's first socket opens and released when the last
/// one closes. Released slots are reused, densely, but only after `reuseDelay`: a delivery
/// the fan-out planned before it saw the OFFLINE delta may still be in flight, and it must
/// not reach the next user who gets the same number.
///
/// A value type with no locking: the owner (`SessionRegistry`) serialises access.
public struct LocalRouter<Socket: AnyObject> {
    /// One allocated slot.
    struct Entry {
        var userID: String
        var sockets: [Socket]
    }

    /// Indexed by slot; nil for a free slot.
    private var entries: [Entry?] = []
    private var slotByUser: [String: UInt32] = [:]
    /// Released slots, oldest first, with the time they were released.
    private var released = FIFO<(slot: UInt32, at: ContinuousClock.Instant)>()
    /// How long a released slot stays unused before it can go to another user.
    public let reuseDelay: Duration
    public private(set) var socketCount = 0

    public init(reuseDelay: Duration = .seconds(30)) {
        self.reuseDelay = reuseDelay
    }

    /// Users with at least one socket.
    public var userCount: Int { slotByUser.count }

    /// Slots ever allocated (the table's high-water mark).
    public var slotCapacity: Int { entries.count }

    /// Adds a socket of `userID`; `isFirst` when the user had none (its slot is new and the
    /// user has just come online here).
    public mutating func add(_ socket: Socket, user userID: String, now: ContinuousClock.Instant) -> (slot: UInt32, isFirst: Bool) {
        socketCount += 1
        if let slot = slotByUser[userID] {
            entries[Int(slot)]!.sockets.append(socket)
            return (slot, false)
        }
        let slot: UInt32
        if let oldest = released.first, oldest.at + reuseDelay <= now {
            released.removeFirst()
            slot = oldest.slot
            entries[Int(slot)] = Entry(userID: userID, sockets: [socket])
        } else {
            slot = UInt32(entries.count)
            entries.append(Entry(userID: userID, sockets: [socket]))
        }
        slotByUser[userID] = slot
        return (slot, true)
    }

    /// Removes `socket` (compared by identity); `isLast` when the user has no socket left,
    /// in which case the slot is released. Nil when the socket was not registered.
    @discardableResult
    public mutating func remove(_ socket: Socket, user userID: String, now: ContinuousClock.Instant) -> (slot: UInt32, isLast: Bool)? {
        guard let slot = slotByUser[userID], var entry = entries[Int(slot)],
              let index = entry.sockets.firstIndex(where: { $0 === socket }) else { return nil }
        socketCount -= 1
        entry.sockets.remove(at: index)
        if entry.sockets.isEmpty {
            entries[Int(slot)] = nil
            slotByUser[userID] = nil
            released.append((slot, now))
            return (slot, true)
        }
        entries[Int(slot)] = entry
        return (slot, false)
    }

    /// The sockets of `slot`; empty for a free or unknown slot.
    public func sockets(inSlot slot: UInt32) -> [Socket] {
        guard Int(slot) < entries.count, let entry = entries[Int(slot)] else { return [] }
        return entry.sockets
    }

    /// Calls `body` with every socket of `slot`; returns false when the slot has none.
    @inline(__always)
    public func forEachSocket(inSlot slot: UInt32, _ body: (Socket) -> Void) -> Bool {
        guard Int(slot) < entries.count, let entry = entries[Int(slot)] else { return false }
        entry.sockets.forEach(body)
        return true
    }

    public func slot(of userID: String) -> UInt32? { slotByUser[userID] }

    public func user(inSlot slot: UInt32) -> String? {
        guard Int(slot) < entries.count else { return nil }
        return entries[Int(slot)]?.userID
    }

    /// Every online user with its slot (for re-registering presence after a Redis outage).
    public func registrations() -> [(userID: String, slot: UInt32)] {
        slotByUser.map { ($0.key, $0.value) }
    }

    /// Every socket (for draining).
    public func allSockets() -> [Socket] {
        entries.flatMap { $0?.sockets ?? [] }
    }
}

extension LocalRouter: Sendable where Socket: Sendable {}
extension LocalRouter.Entry: Sendable where Socket: Sendable {}
extension FIFO: Sendable where Element: Sendable {}

/// A first-in first-out queue with amortised O(1) removal at the front.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ element: Element) { storage.append(element) }

    @discardableResult
    mutating func removeFirst() -> Element {
        let element = storage[head]
        head += 1
        if head > 64 && head * 2 > storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    mutating func removeAll() {
        storage.removeAll()
        head = 0
    }

    /// Removes and returns everything, oldest first.
    mutating func takeAll() -> [Element] {
        let all = Array(storage[head...])
        removeAll()
        return all
    }
}
