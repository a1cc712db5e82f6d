/// A deterministic (seeded) chat dataset: users, channels with Zipf-distributed sizes, a few
/// heavy users (bots, admins) in a very large number of channels, and online users spread
/// over notifier instances. The same seed and sizes always give the same data.
struct Dataset {
    struct Shape: Sendable {
        var users: Int
        var channels: Int
        var memberships: Int
        /// Users that join up to `heavyUserChannels` channels each (the largest ones first).
        var heavyUsers = 10
        var heavyUserChannels = 100_000
        var online: Int
        var instances: Int
        var zipfExponent = 1.0
        var seed: UInt64 = 42
    }

    let shape: Shape
    /// Member count of each channel, largest first (heavy users excluded).
    let channelSizes: [Int]

    init(_ shape: Shape) {
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

    static func channelID(_ index: Int) -> String { "c\(index)" }
    static func userID(_ index: Int) -> String { "u\(index)" }
    static func instanceID(_ index: Int) -> String { "notifier-\(index)" }

    var membershipCount: Int {
        channelSizes.reduce(0, +) + shape.heavyUsers * min(shape.heavyUserChannels, shape.channels)
    }

    /// Calls `body(channel, user)` for every membership, channel by channel. Members of a
    /// channel are a stratified random sample of the users (one per stride), ascending.
    func forEachMembership(_ body: (Int, Int) throws -> Void) rethrows {
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
    func forEachOnlineUser(_ body: (_ user: Int, _ instance: Int, _ slot: UInt32) throws -> Void) rethrows {
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

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

import Foundation
