/// The Redis schema of presence, written by every notifier and read by every fan-out replica.
public enum PresenceKeys {
    /// Sorted set `instance → last heartbeat (ms since the epoch)`.
    public static let instances = "instances"

    /// Pub/sub channel carrying every presence change as a protobuf `PresenceDelta`.
    public static let channel = "presence"

    /// `presence:<instance>`: hash `user_id → slot` of the users connected to `instance`.
    public static func users(instance: String) -> String { "presence:\(instance)" }

    /// `epoch:<instance>`: the instance's process-start counter (`INCR` at each start).
    public static func epoch(instance: String) -> String { "epoch:\(instance)" }
}
