import Foundation
import SwitchboardHarness

/// A deterministic (seeded) chat dataset: users, channels with Zipf-distributed sizes, a few
/// heavy users (bots, admins) in a very large number of channels, and online users spread
/// over notifier instances. The same seed and sizes always give the same data.
public struct Dataset: Sendable {
    public struct Shape: Sendable {
        public var users: Int
        public var channels: Int
        public var memberships: Int
        /// Users that join up to `heavyUserChannels` channels each (the largest ones first).
        public var heavyUsers = 10
        public var heavyUserChannels = 100_000
        public var online: Int
        public var instances: Int
        public var zipfExponent = 1.0
        public var seed: UInt64 = 42

        public init(users: Int, channels: Int, memberships: Int, heavyUsers: Int = 10, heavyUserChannels: Int = 100_000,
                    online: Int, instances: Int, zipfExponent: Double = 1.0, seed: UInt64 = 42) {
            self.users = users
            self.channels = channels
            self.memberships = memberships
            self.heavyUsers = heavyUsers
            self.heavyUserChannels = heavyUserChannels
            self.online = online
            self.instances = instances
            self.zipfExponent = zipfExponent
            self.seed = seed
        }
    }

    public let shape: Shape
    /// Member count of each channel, largest first (heavy users excluded).
    public let channelSizes: [Int]

    public init(_ shape: Shape) {
        self.shape = shape
        let heavyTotal = shape.heavyUsers * min(shape.heavyUserChannels, shape.channels)
        let target = max(shape.memberships - heavyTotal, shape.channels)
        // Zipf weights 1/r^s, scaled to the target and capped at the user count.
        let weights = (1...shape.channels).map { 1 / pow(Double($0), shape.zipfExponent) }
        var scale = Double(target) / weights.reduce(0, +)
        var sizes: [Int] = []
        for _ in 0..<8 {
            sizes = weights.map { max(1, min(shape.users - shape.heavyUsers, Int(($0 * scale).rounded()))) }
            let total = sizes.reduce(0, +)
            if abs(total - target) * 200 < target { break }
            scale *= Double(target) / Double(total)
        }
        channelSizes = sizes
    }

    public static func channelID(_ index: Int) -> String { "c\(index)" }
    public static func userID(_ index: Int) -> String { "u\(index)" }
    public static func instanceID(_ index: Int) -> String { "notifier-\(index)" }

    public var membershipCount: Int {
        channelSizes.reduce(0, +) + shape.heavyUsers * min(shape.heavyUserChannels, shape.channels)
    }

    /// Calls `body(channel, user)` for every membership, channel by channel. Members of a
    /// channel are a stratified random sample of the users (one per stride), ascending.
    public func forEachMembership(_ body: (Int, Int) throws -> Void) rethrows {
        var rng = SplitMix64(seed: shape.seed)
        let ordinary = shape.users - shape.heavyUsers
        for (channel, size) in channelSizes.enumerated() {
            if channel < shape.heavyUserChannels {
                for heavy in 0..<shape.heavyUsers { try body(channel, heavy) }
            }
            let stride = Double(ordinary) / Double(size)
            for index in 0..<size {
                let low = Int(Double(index) * stride)
                let high = max(low + 1, Int(Double(index + 1) * stride))
                try body(channel, shape.heavyUsers + low + Int(rng.next() % UInt64(high - low)))
            }
        }
    }

    /// Online users (deterministic), each on one instance with a per-instance dense slot.
    public func forEachOnlineUser(_ body: (_ user: Int, _ instance: Int, _ slot: UInt32) throws -> Void) rethrows {
        var rng = SplitMix64(seed: shape.seed &+ 1)
        var nextSlot = [UInt32](repeating: 0, count: max(1, shape.instances))
        let stride = Double(shape.users) / Double(max(1, shape.online))
        for index in 0..<min(shape.online, shape.users) {
            let user = Int(Double(index) * stride)
            let instance = Int(rng.next() % UInt64(max(1, shape.instances)))
            try body(user, instance, nextSlot[instance])
            nextSlot[instance] += 1
        }
    }
}
