import Foundation
import RoutingCore
import SwitchboardContracts
import SwitchboardProto

/// The routing table shared by the fan-out's threads: pipelines plan under a read lock,
/// membership feeds and the presence watcher apply changes under the write lock. Also keeps
/// per partition the membership sequence applied and what the snapshot writer needs.
final class RoutingState: @unchecked Sendable {  // `table` and `progress` are only touched under `lock`
    private let lock = ReadWriteLock()
    private var table: RoutingTable
    private var progress: [Int: Progress] = [:]

    struct Progress {
        /// Last `CHAT_MEMBERSHIP` stream sequence applied (or skipped) in this partition.
        var sequence: UInt64 = 0
        var changesSinceSnapshot = 0
        var lastSnapshot = ContinuousClock.now
    }

    enum StateError: Error, CustomStringConvertible {
        case subjectMismatch(subject: String, expected: String)
        case rejected(String)

        var description: String {
            switch self {
            case .subjectMismatch(let subject, let expected): "subject \(subject) does not match its payload (expected \(expected))"
            case .rejected(let why): why
            }
        }
    }

    init(partitions: [Int], partitionCount: Int) {
        table = RoutingTable(partitions: partitions, partitionCount: partitionCount)
        self.partitionCount = partitionCount
        for partition in partitions { progress[partition] = Progress() }
    }

    let partitionCount: Int

    // MARK: membership

    /// One `CHAT_MEMBERSHIP` message as a feed read it: a change that agrees with its subject,
    /// or why it cannot be applied.
    struct MembershipRecord {
        var partition: Int
        var sequence: UInt64
        var change: Result<MembershipChange, StateError>

        /// Decodes `payload` and checks it against `subject` (raw bytes, as the consumer lends them).
        init(partition: Int, sequence: UInt64, subject: UnsafeBufferPointer<UInt8>, payload: UnsafeBufferPointer<UInt8>) {
            self.partition = partition
            self.sequence = sequence
            do {
                let change = try MembershipChange(decoding: payload)
                let user = change.state == .channelDeleted ? Subjects.channelDeletedUser : change.userID
                if Subjects.isMembership(subject, partition: partition, channel: change.channelID, user: user) {
                    self.change = .success(change)
                } else {
                    self.change = .failure(.subjectMismatch(subject: String(decoding: subject, as: UTF8.self), expected: "chat.membership.\(partition).\(change.channelID).\(user)"))
                }
            } catch {
                self.change = .failure(.rejected("\(error)"))
            }
        }
    }

    /// Applies `records` in order under one write lock (a replay reads them in thousands).
    /// Rejected ones change nothing but still count as consumed, so snapshots cover them;
    /// returns them with why.
    func apply(_ records: [MembershipRecord]) -> [(record: MembershipRecord, error: StateError)] {
        var rejected: [(record: MembershipRecord, error: StateError)] = []
        let users = records.compactMap { try? $0.change.get().userID }
        lock.write {
            table.prefetchUsers(users)
            // Consecutive records mostly share a partition (a replay reads channel by channel):
            // its progress is advanced once per run of them.
            var run: (partition: Int, sequence: UInt64, count: Int)?
            defer { if let run { advance(run.partition, to: run.sequence, changes: run.count) } }
            for record in records {
                if let current = run, current.partition == record.partition {
                    run = (current.partition, max(current.sequence, record.sequence), current.count + 1)
                } else {
                    if let run { advance(run.partition, to: run.sequence, changes: run.count) }
                    run = (record.partition, record.sequence, 1)
                }
                do {
                    let change = try record.change.get()
                    let state: RoutingTable.MembershipState = switch change.state {
                    case .joined: .joined
                    case .left: .left
                    case .channelDeleted: .channelDeleted
                    }
                    try table.applyMembership(partition: record.partition, channel: change.channelID, user: change.userID, state: state, version: change.version)
                } catch let error as StateError {
                    rejected.append((record, error))
                } catch {
                    rejected.append((record, .rejected("\(error)")))
                }
            }
        }
        return rejected
    }

    private func advance(_ partition: Int, to sequence: UInt64, changes: Int) {
        guard var entry = progress[partition] else { return }
        entry.sequence = max(entry.sequence, sequence)
        entry.changesSinceSnapshot += changes
        progress[partition] = entry
    }

    func isMember(partition: Int, channel: String, user: String) -> Bool {
        lock.read { table.isMember(partition: partition, channel: channel, user: user) }
    }

    // MARK: presence

    func applyPresence(_ delta: PresenceDelta) throws {
        let change: RoutingTable.PresenceChange = switch delta.state {
        case .online: .online(user: delta.userID, slot: delta.slot)
        case .offline: .offline(user: delta.userID)
        case .instanceDown: .instanceDown
        }
        try lock.write {
            do {
                try table.applyPresence(instance: delta.instanceID, epoch: delta.epoch, change)
            } catch {
                throw StateError.rejected("\(error)")
            }
        }
    }

    func replacePresence(_ scanned: [String: (epoch: UInt64, users: [(String, UInt32)])], nowMs: Int64, graceMs: Int64) {
        lock.write { table.replacePresence(scanned, nowMs: nowMs, graceMs: graceMs) }
    }

    func heartbeats(_ beats: [(String, Int64)], nowMs: Int64, timeoutMs: Int64) -> RoutingTable.HeartbeatResult {
        lock.write { table.heartbeats(beats.map { (instance: $0.0, atMs: $0.1) }, nowMs: nowMs, timeoutMs: timeoutMs) }
    }

    // MARK: planning

    /// Plans an event of `channel` into `plan` (owned by the calling thread).
    @discardableResult
    func plan(partition: Int, channel: String, skipUser: String?, into plan: inout PlanBuffer) -> Int {
        lock.read { table.plan(partition: partition, channel: channel, skipUser: skipUser, into: &plan) }
    }

    // MARK: snapshots

    /// Loads a partition image, decoded and built outside the lock so that several load side
    /// by side. `dictionary` holds the table ids of the writer's dictionary entries (see
    /// `internDictionary`); a version 1 image interns its own users instead.
    /// `sequence` is the membership sequence the image covers: the partition's position until
    /// the feed applies a later change.
    func load(image: [UInt8], partition: Int, sequence: UInt64, dictionary: [UInt32]?) throws {
        let decoded = try RoutingImage.decode(image, partition: partition, partitionCount: partitionCount)
        let userIDs: [UInt32]
        if decoded.dictionaryUsers == nil {
            userIDs = lock.write { table.internUsers(of: decoded) }
        } else {
            guard let dictionary else { throw FanoutError.snapshotCorrupt(partition: partition, reason: "the image refers to a user dictionary its manifest does not name") }
            userIDs = dictionary
        }
        let channels = try decoded.channelTable(userIDs: userIDs)
        try lock.write {
            try table.install(channels, partition: partition)
            progress[partition]?.sequence = sequence
        }
    }

    /// Interns a dictionary's users in order; returns their table ids (dictionary id → table id).
    func internDictionary(_ segments: [UserDictionary.Segment]) -> [UInt32] {
        lock.write {
            var ids: [UInt32] = []
            for segment in segments { ids += table.internUsers(of: segment) }
            return ids
        }
    }

    func resetPartition(_ partition: Int) {
        lock.write {
            table.resetPartition(partition)
            progress[partition] = Progress()
        }
    }

    /// Drops growth slack left by a bulk load (after warm-up).
    func compact() {
        lock.write { table.compact() }
    }

    /// The partition's image, the membership sequence it covers and the dictionary entries it needs.
    func image(partition: Int) -> (image: [UInt8], sequence: UInt64, users: Int) {
        lock.read { (RoutingImage.encode(table, partition: partition), progress[partition]?.sequence ?? 0, table.users.count) }
    }

    /// A dictionary segment of the table's users from id `first` on (see `UserDictionary.segment`).
    func dictionarySegment(lineage: UInt64, from first: Int, maxBytes: Int) -> (bytes: [UInt8], end: Int) {
        lock.read { UserDictionary.segment(of: table.users, lineage: lineage, from: first, maxBytes: maxBytes) }
    }

    func partitionsDueForSnapshot(everyChanges: Int, interval: Duration) -> [Int] {
        let now = ContinuousClock.now
        return lock.read {
            progress.filter { _, p in
                p.changesSinceSnapshot >= everyChanges || (p.changesSinceSnapshot > 0 && now - p.lastSnapshot >= interval)
            }.keys.sorted()
        }
    }

    func snapshotWritten(partition: Int, sequence: UInt64) {
        lock.write {
            guard var entry = progress[partition] else { return }
            entry.lastSnapshot = .now
            // Changes applied while the image was being written still count.
            entry.changesSinceSnapshot = entry.sequence == sequence ? 0 : 1
            progress[partition] = entry
        }
    }

    // MARK: inspection

    /// What the table gauges show.
    struct Gauges {
        var memberships = 0
        var channels = 0
        var onlineUsers = 0
        var instances = 0
        /// Channel tables, presence and interned user ids; 0 unless asked for (it walks every channel).
        var tableBytes = 0
    }

    func gauges(includingBytes: Bool) -> Gauges {
        lock.read {
            Gauges(
                memberships: table.membershipCount, channels: table.channelCount, onlineUsers: table.presence.onlineCount,
                instances: table.instances.all.filter { !$0.isDown && $0.users > 0 }.count,
                tableBytes: includingBytes ? table.channelBytes + table.presence.byteCount + table.users.byteCount : 0
            )
        }
    }

    func stats(replica: Inspection.Replica, lag: [String: UInt64]) -> Inspection.Stats {
        lock.read {
            let memberships = table.membershipCount
            let tableBytes = table.channelBytes + table.presence.byteCount
            return Inspection.Stats(
                replica: replica, users: table.users.count, onlineUsers: table.presence.onlineCount,
                channels: table.channelCount, memberships: memberships, tableBytes: tableBytes, presenceBytes: table.presence.byteCount,
                userIdBytes: table.users.byteCount,
                bytesPerMembership: memberships == 0 ? 0 : Double(tableBytes) / Double(memberships),
                instances: table.instances.all.filter { !$0.isDown && $0.users > 0 }.count,
                eventLag: lag, membershipSequence: progress.values.map(\.sequence).max() ?? 0
            )
        }
    }

    func inspectUser(_ id: String, replica: Inspection.Replica) -> Inspection.User {
        lock.read {
            guard let user = table.users.id(of: id) else {
                return Inspection.User(replica: replica, user: id, known: false, online: false, placements: [], channels: 0)
            }
            let placements = table.presence.placements(of: user).map {
                Inspection.Placement(instance: table.instances[$0.instance].id, slot: $0.slot)
            }
            var channels = 0
            for partition in table.partitions.values {
                for members in partition.members where members.contains(user) { channels += 1 }
            }
            return Inspection.User(replica: replica, user: id, known: true, online: table.presence.isOnline(user), placements: placements, channels: channels)
        }
    }

    func inspectChannel(_ id: String, replica: Inspection.Replica) -> Inspection.Channel {
        let partition = Partitioner.partition(of: id, count: table.partitionCount)
        return lock.read {
            guard let channels = table.partitions[partition] else {
                return Inspection.Channel(replica: replica, channel: id, partition: partition, owned: false, exists: false, members: 0, onlineMembers: 0, targets: [])
            }
            guard let channel = channels.channel(id), !channels.isDeleted(channel) else {
                return Inspection.Channel(replica: replica, channel: id, partition: partition, owned: true, exists: false, members: 0, onlineMembers: 0, targets: [])
            }
            let members = channels.members(of: channel)
            var online = 0
            var perInstance: [UInt32: Int] = [:]
            members.forEach { user in
                guard table.presence.isOnline(user) else { return }
                online += 1
                table.presence.forEachPlacement(of: user) { perInstance[$0.instance, default: 0] += 1 }
            }
            let targets = perInstance.map { Inspection.TargetInstance(instance: table.instances[$0.key].id, recipients: $0.value) }
                .sorted { $0.instance < $1.instance }
            return Inspection.Channel(replica: replica, channel: id, partition: partition, owned: true, exists: true, members: Int(members.count), onlineMembers: online, targets: targets)
        }
    }

    func inspectInstances(replica: Inspection.Replica) -> Inspection.Instances {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        return lock.read {
            let instances = table.instances.all.filter { !$0.isDown }.map {
                Inspection.InstanceInfo(instance: $0.id, epoch: $0.epoch, users: $0.users, lastHeartbeatAgeMs: $0.lastHeartbeatMs == 0 ? -1 : now - $0.lastHeartbeatMs)
            }
            return Inspection.Instances(replica: replica, instances: instances.sorted { $0.instance < $1.instance })
        }
    }
}

/// A pthread reader-writer lock that prefers writers, so a steady stream of planning
/// readers never starves membership and presence updates. A reader-writer lock because a
/// snapshot encodes a whole partition image under the read lock while pipelines keep planning.
final class ReadWriteLock: @unchecked Sendable {  // owns the pthread lock's memory, shared by design
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func read<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func write<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
