import SwitchboardContracts

/// The fan-out's whole routing state, pure and single-owner (the service wraps it in a
/// lock): interned users, the channel tables of the owned partitions, presence and the
/// known notifier instances.
public struct RoutingTable: Sendable {
    public internal(set) var users = StringInterner()
    public internal(set) var partitions: PartitionTables
    public private(set) var presence = PresenceTable()
    public private(set) var instances = InstanceRegistry()
    public let partitionCount: Int

    public init(partitions owned: [Int], partitionCount: Int) {
        self.partitionCount = partitionCount
        partitions = PartitionTables(owned: owned, count: partitionCount)
    }

    // MARK: membership

    /// A membership change as the stream carries it, with ids already validated.
    public enum MembershipState: Sendable {
        case joined, left, channelDeleted
    }

    public enum ApplyError: Error, Equatable, CustomStringConvertible {
        case invalidID(String)
        case wrongPartition(channel: String, expected: Int, got: Int)

        public var description: String {
            switch self {
            case .invalidID(let why): why
            case .wrongPartition(let channel, let expected, let got):
                "channel \(channel) belongs to partition \(expected), not \(got)"
            }
        }
    }

    /// Applies one membership change to `partition`'s table. Idempotent; ordered by version
    /// (see `ChannelTable`). Throws for invalid ids or a channel of another partition.
    @discardableResult
    public mutating func applyMembership(partition: Int, channel: String, user: String, state: MembershipState, version: UInt64) throws(ApplyError) -> ChannelTable.Outcome {
        if let problem = Identifier.problem(channel, kind: "channel") { throw .invalidID(problem) }
        let expected = Partitioner.partition(of: channel, count: partitionCount)
        guard expected == partition, partitions.owns(partition) else {
            throw .wrongPartition(channel: channel, expected: expected, got: partition)
        }
        if state == .channelDeleted {
            let index = partitions[partition]!.internChannel(channel)
            return partitions[partition]!.delete(channel: index, version: version)
        }
        if let problem = Identifier.problem(user, kind: "user") { throw .invalidID(problem) }
        let userIndex = users.intern(user)
        return partitions.modify(partition) { table in
            let channelIndex = table.internChannel(channel)
            return switch state {
            case .joined: table.join(channel: channelIndex, user: userIndex, version: version)
            case .left: table.leave(channel: channelIndex, user: userIndex, version: version)
            case .channelDeleted: .unchanged
            }
        }
    }

    public func isMember(partition: Int, channel: String, user: String) -> Bool {
        guard let table = partitions[partition], let channelIndex = table.channel(channel), let userIndex = users.id(of: user) else { return false }
        return table.members[Int(channelIndex)].contains(userIndex)
    }

    /// Warms the user index for a batch about to be applied (see `StringInterner.prefetch`).
    public mutating func prefetchUsers(_ ids: [String]) { users.prefetch(ids) }

    public mutating func resetPartition(_ partition: Int) {
        guard partitions.owns(partition) else { return }
        partitions[partition] = ChannelTable()
    }

    public mutating func compact() {
        for partition in partitions.keys { partitions[partition]!.compact() }
        users.compact()
    }

    // MARK: presence

    public enum PresenceChange: Sendable {
        case online(user: String, slot: UInt32)
        case offline(user: String)
        case instanceDown
    }

    public enum PresenceOutcome: Sendable, Equatable {
        case applied
        /// From an older process of the instance (or one already declared down): ignored.
        case staleEpoch
        case unchanged
    }

    /// Applies one presence delta. A newer epoch means the instance restarted: its old
    /// placements are dropped first. Older epochs are ignored, so deltas can arrive late
    /// or twice.
    @discardableResult
    public mutating func applyPresence(instance id: String, epoch: UInt64, _ change: PresenceChange) throws(ApplyError) -> PresenceOutcome {
        if let problem = Identifier.problem(id, kind: "instance") { throw .invalidID(problem) }
        let instance = instances.intern(id)
        guard adoptEpoch(instance, epoch) else { return .staleEpoch }
        switch change {
        case .online(let user, let slot):
            if let problem = Identifier.problem(user, kind: "user") { throw .invalidID(problem) }
            let userIndex = users.intern(user)
            if presence.placement(of: userIndex, on: instance) == Placement(instance: instance, slot: slot) { return .unchanged }
            if presence.setOnline(userIndex, Placement(instance: instance, slot: slot)) { instances[instance].users += 1 }
            return .applied
        case .offline(let user):
            guard let userIndex = users.id(of: user), presence.setOffline(userIndex, instance: instance) else { return .unchanged }
            instances[instance].users -= 1
            return .applied
        case .instanceDown:
            markDown(instance)
            return .applied
        }
    }

    /// Accepts `epoch` for `instance`: false if it is older than the current one or was
    /// declared down; a newer epoch clears the old process's placements.
    private mutating func adoptEpoch(_ instance: UInt32, _ epoch: UInt64) -> Bool {
        let known = instances[instance]
        if epoch < known.epoch || (known.downAtEpoch != 0 && epoch <= known.downAtEpoch) { return false }
        if epoch > known.epoch {
            if known.users > 0 { presence.removeInstance(instance) }
            instances[instance].users = 0
            instances[instance].epoch = epoch
        }
        return true
    }

    private mutating func markDown(_ instance: UInt32) {
        presence.removeInstance(instance)
        instances[instance].users = 0
        instances[instance].downAtEpoch = instances[instance].epoch
    }

    /// Replaces presence with a full scan of the live instances (warm-up, or after a Redis
    /// outage). A listed instance gets exactly its scanned users. An unlisted one keeps its
    /// users while its last heartbeat is within `graceMs` of `nowMs` — Redis may have come
    /// back empty, and its notifier re-registers only at its next heartbeat; until then an
    /// empty scan would route its users' events to nobody — and heartbeat expiry removes it
    /// if it really is gone. Other unlisted instances lose their users.
    public mutating func replacePresence(_ scan: [String: (epoch: UInt64, users: [(String, UInt32)])], nowMs: Int64 = 0, graceMs: Int64 = 0) {
        var kept = Set<UInt32>()
        for index in 0..<instances.count {
            let instance = UInt32(index)
            let known = instances[instance]
            // Known only from its deltas so far (no heartbeat polled yet) counts as recent,
            // as `heartbeats` gives such an instance its grace from first sight.
            let recent = graceMs > 0 && !known.isDown && (known.lastHeartbeatMs == 0 || nowMs - known.lastHeartbeatMs <= graceMs)
            if scan[known.id] == nil && recent {
                kept.insert(instance)
            } else {
                presence.removeInstance(instance)
                instances[instance].users = 0
            }
        }
        for (id, entry) in scan where Identifier.isValid(id) {
            let instance = instances.intern(id)
            instances[instance].epoch = entry.epoch
            instances[instance].downAtEpoch = 0
            for (user, slot) in entry.users where Identifier.isValid(user) {
                if presence.setOnline(users.intern(user), Placement(instance: instance, slot: slot)) { instances[instance].users += 1 }
            }
        }
        for index in 0..<instances.count where scan[instances[UInt32(index)].id] == nil && !kept.contains(UInt32(index)) {
            let instance = UInt32(index)
            if instances[instance].downAtEpoch == 0 && instances[instance].epoch > 0 { instances[instance].downAtEpoch = instances[instance].epoch }
        }
    }

    public struct HeartbeatResult: Sendable, Equatable {
        /// Instances whose heartbeat is older than the timeout: their users left routing.
        public var expired: [String] = []
        /// Instances declared down that heartbeat again: their presence must be rescanned.
        public var revived: [String] = []
    }

    /// Records heartbeats (instance → last beat, ms) and expires instances whose last beat
    /// is older than `timeoutMs`. An instance first seen without a beat gets `timeoutMs` of
    /// grace from `nowMs`.
    public mutating func heartbeats(_ beats: [(instance: String, atMs: Int64)], nowMs: Int64, timeoutMs: Int64) -> HeartbeatResult {
        var result = HeartbeatResult()
        for beat in beats where Identifier.isValid(beat.instance) {
            let instance = instances.intern(beat.instance)
            let previous = instances[instance].lastHeartbeatMs
            instances[instance].lastHeartbeatMs = max(previous, beat.atMs)
            if instances[instance].isDown, beat.atMs > previous, nowMs - beat.atMs <= timeoutMs { result.revived.append(beat.instance) }
        }
        for index in 0..<instances.count {
            let instance = UInt32(index)
            let known = instances[instance]
            guard !known.isDown, known.epoch > 0 || known.users > 0 else { continue }
            if known.lastHeartbeatMs == 0 {
                instances[instance].lastHeartbeatMs = nowMs
                continue
            }
            guard nowMs - known.lastHeartbeatMs > timeoutMs else { continue }
            markDown(instance)
            result.expired.append(known.id)
        }
        return result
    }

    // MARK: size

    /// Bytes of the member sets and channel indexes of every partition.
    public var channelBytes: Int { partitions.values.reduce(0) { $0 + $1.byteCount } }
    public var membershipCount: Int { partitions.values.reduce(0) { $0 + $1.membershipCount } }
    public var channelCount: Int { partitions.values.reduce(0) { $0 + $1.channelCount } }
}
