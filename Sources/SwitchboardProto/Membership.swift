import CSwitchboardProto

/// One membership fact, published on `chat.membership.<p>.<channel>.<user>` (for a channel
/// deletion the user token is `_`). The stream keeps the latest per subject.
public struct MembershipChange: Sendable, Equatable {
    public enum State: Int32, Sendable, Equatable {
        case joined = 1
        case left = 2
        case channelDeleted = 3
    }

    public var channelID: String
    public var userID: String
    public var state: State
    public var version: UInt64

    public init(channelID: String, userID: String, state: State, version: UInt64) {
        self.channelID = channelID
        self.userID = userID
        self.state = state
        self.version = version
    }

    public init(decoding bytes: some Collection<UInt8>) throws(ProtoError) {
        let message = try unpacked("MembershipChange", bytes) { switchboard__v1__membership_change__unpack(nil, $0, $1) }
        defer { switchboard__v1__membership_change__free_unpacked(message, nil) }
        let m = message.pointee
        self.init(channelID: swiftString(m.channel_id), userID: swiftString(m.user_id),
                  state: try swiftEnum(m.state.rawValue, "MembershipChange", field: "state"), version: m.version)
    }

    public func encoded() -> [UInt8] {
        let arena = CArena()
        var m = Switchboard__V1__MembershipChange()
        switchboard__v1__membership_change__init(&m)
        m.channel_id = arena.string(channelID)
        m.user_id = arena.string(userID)
        m.state = Switchboard__V1__MembershipState(rawValue: UInt32(bitPattern: state.rawValue))
        m.version = version
        return withUnsafePointer(to: &m) { p in
            packed(size: switchboard__v1__membership_change__get_packed_size(p)) { switchboard__v1__membership_change__pack(p, $0) }
        }
    }
}

/// A presence change, published by a notifier on the Redis pub/sub channel `presence`.
public struct PresenceDelta: Sendable, Equatable {
    public enum State: Int32, Sendable, Equatable {
        case online = 1
        case offline = 2
        /// The whole instance is gone (drained or expired); `userID` and `slot` are unused.
        case instanceDown = 3
    }

    public var instanceID: String
    public var epoch: UInt64
    public var userID: String
    public var slot: UInt32
    public var state: State

    public init(instanceID: String, epoch: UInt64, userID: String, slot: UInt32, state: State) {
        self.instanceID = instanceID
        self.epoch = epoch
        self.userID = userID
        self.slot = slot
        self.state = state
    }

    public init(decoding bytes: some Collection<UInt8>) throws(ProtoError) {
        let message = try unpacked("PresenceDelta", bytes) { switchboard__v1__presence_delta__unpack(nil, $0, $1) }
        defer { switchboard__v1__presence_delta__free_unpacked(message, nil) }
        let m = message.pointee
        self.init(instanceID: swiftString(m.instance_id), epoch: m.epoch, userID: swiftString(m.user_id), slot: m.slot,
                  state: try swiftEnum(m.state.rawValue, "PresenceDelta", field: "state"))
    }

    public func encoded() -> [UInt8] {
        let arena = CArena()
        var m = Switchboard__V1__PresenceDelta()
        switchboard__v1__presence_delta__init(&m)
        m.instance_id = arena.string(instanceID)
        m.epoch = epoch
        m.user_id = arena.string(userID)
        m.slot = slot
        m.state = Switchboard__V1__PresenceState(rawValue: UInt32(bitPattern: state.rawValue))
        return withUnsafePointer(to: &m) { p in
            packed(size: switchboard__v1__presence_delta__get_packed_size(p)) { switchboard__v1__presence_delta__pack(p, $0) }
        }
    }
}
