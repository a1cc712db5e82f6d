/// JSON replies of the fan-out's inspection subjects (`routing.inspect.*`), the contract
/// between `fanout` and `routectl`. Every replica answers every request for its own
/// partitions; `routectl` merges the answers and tells when some partitions did not answer.
public enum Inspection {
    public static let statsSubject = "routing.inspect.stats"
    public static let userSubject = "routing.inspect.user"
    public static let channelSubject = "routing.inspect.channel"
    public static let instancesSubject = "routing.inspect.instances"

    /// Who answered: lets the gatherer see which partitions are covered.
    public struct Replica: Codable, Sendable, Equatable {
        public var id: String
        public var partitions: [Int]
        public var partitionCount: Int
        public var ready: Bool
        /// The partitions this replica delivers (holds the lease of); empty on a warm standby.
        /// Nil from replicas that do not report it.
        public var activePartitions: [Int]?

        public init(id: String, partitions: [Int], partitionCount: Int, ready: Bool, activePartitions: [Int]? = nil) {
            self.id = id
            self.partitions = partitions
            self.partitionCount = partitionCount
            self.ready = ready
            self.activePartitions = activePartitions
        }

        enum CodingKeys: String, CodingKey {
            case id, partitions, ready
            case partitionCount = "partition_count"
            case activePartitions = "active_partitions"
        }
    }

    public struct Stats: Codable, Sendable, Equatable {
        public var replica: Replica
        /// Users known to this replica (members of its channels, or online).
        public var users: Int
        public var onlineUsers: Int
        public var channels: Int
        public var memberships: Int
        /// Member sets, channel index and presence, excluding the user-id strings.
        public var tableBytes: Int
        /// The presence part of `tableBytes` (grows with online users, not memberships); nil
        /// from replicas that do not report it.
        public var presenceBytes: Int?
        /// The interned user-id strings.
        public var userIdBytes: Int
        public var bytesPerMembership: Double
        public var instances: Int
        /// Messages not yet consumed, per owned partition of `CHAT_EVENTS`.
        public var eventLag: [String: UInt64]
        /// Last `CHAT_MEMBERSHIP` sequence applied.
        public var membershipSequence: UInt64

        public init(replica: Replica, users: Int, onlineUsers: Int, channels: Int, memberships: Int, tableBytes: Int, presenceBytes: Int? = nil, userIdBytes: Int, bytesPerMembership: Double, instances: Int, eventLag: [String: UInt64], membershipSequence: UInt64) {
            self.replica = replica
            self.users = users
            self.onlineUsers = onlineUsers
            self.channels = channels
            self.memberships = memberships
            self.tableBytes = tableBytes
            self.presenceBytes = presenceBytes
            self.userIdBytes = userIdBytes
            self.bytesPerMembership = bytesPerMembership
            self.instances = instances
            self.eventLag = eventLag
            self.membershipSequence = membershipSequence
        }

        enum CodingKeys: String, CodingKey {
            case replica, users, channels, memberships, instances
            case onlineUsers = "online_users"
            case tableBytes = "table_bytes"
            case presenceBytes = "presence_bytes"
            case userIdBytes = "user_id_bytes"
            case bytesPerMembership = "bytes_per_membership"
            case eventLag = "event_lag"
            case membershipSequence = "membership_seq"
        }
    }

    /// One place a user is connected.
    public struct Placement: Codable, Sendable, Equatable {
        public var instance: String
        public var slot: UInt32
        public init(instance: String, slot: UInt32) {
            self.instance = instance
            self.slot = slot
        }
    }

    public struct User: Codable, Sendable, Equatable {
        public var replica: Replica
        public var user: String
        /// False when this replica has never heard of the user.
        public var known: Bool
        public var online: Bool
        public var placements: [Placement]
        /// Channels of this replica's partitions that list the user.
        public var channels: Int

        public init(replica: Replica, user: String, known: Bool, online: Bool, placements: [Placement], channels: Int) {
            self.replica = replica
            self.user = user
            self.known = known
            self.online = online
            self.placements = placements
            self.channels = channels
        }
    }

    public struct TargetInstance: Codable, Sendable, Equatable {
        public var instance: String
        public var recipients: Int
        public init(instance: String, recipients: Int) {
            self.instance = instance
            self.recipients = recipients
        }
    }

    public struct Channel: Codable, Sendable, Equatable {
        public var replica: Replica
        public var channel: String
        public var partition: Int
        /// Whether this replica owns the channel's partition (only the owner knows it).
        public var owned: Bool
        public var exists: Bool
        public var members: Int
        public var onlineMembers: Int
        public var targets: [TargetInstance]

        public init(replica: Replica, channel: String, partition: Int, owned: Bool, exists: Bool, members: Int, onlineMembers: Int, targets: [TargetInstance]) {
            self.replica = replica
            self.channel = channel
            self.partition = partition
            self.owned = owned
            self.exists = exists
            self.members = members
            self.onlineMembers = onlineMembers
            self.targets = targets
        }

        enum CodingKeys: String, CodingKey {
            case replica, channel, partition, owned, exists, members, targets
            case onlineMembers = "online_members"
        }
    }

    public struct InstanceInfo: Codable, Sendable, Equatable {
        public var instance: String
        public var epoch: UInt64
        public var users: Int
        /// Milliseconds since the instance's last heartbeat, as this replica saw it.
        public var lastHeartbeatAgeMs: Int64

        public init(instance: String, epoch: UInt64, users: Int, lastHeartbeatAgeMs: Int64) {
            self.instance = instance
            self.epoch = epoch
            self.users = users
            self.lastHeartbeatAgeMs = lastHeartbeatAgeMs
        }

        enum CodingKeys: String, CodingKey {
            case instance, epoch, users
            case lastHeartbeatAgeMs = "last_heartbeat_age_ms"
        }
    }

    public struct Instances: Codable, Sendable, Equatable {
        public var replica: Replica
        public var instances: [InstanceInfo]
        public init(replica: Replica, instances: [InstanceInfo]) {
            self.replica = replica
            self.instances = instances
        }
    }

    /// The reply to a request the replica could not answer (bad id, not ready).
    public struct Failure: Codable, Sendable, Equatable {
        public var replica: Replica
        public var error: String
        public init(replica: Replica, error: String) {
            self.replica = replica
            self.error = error
        }
    }
}
