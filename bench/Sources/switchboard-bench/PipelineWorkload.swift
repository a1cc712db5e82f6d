import Foundation
import RoutingCore
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto

/// The deterministic workload of `switchboard-bench pipeline`: channels with log-normal member
/// counts around a median plus a few large channels, online users spread over notifier
/// instances with dense per-instance slots, and the event stream (uniformly random channels,
/// the publish instant in the text so subscribers can compute latency).
struct PipelineWorkload: Sendable {
    struct Shape: Sendable {
        var channels, users, medianMembers, largeEvery, largeMembers: Int
        var onlineFraction: Double
        var instances, partitionCount: Int
        var seed: UInt64
    }

    let shape: Shape
    let channelIDs: [String]
    let eventSubjects: [String]
    let partitions: [Int]
    /// Members of each channel (user indices, distinct).
    let members: [[Int]]
    /// Instance of each user, or -1 when offline; `slots[user]` is its slot on that instance.
    let instanceOf: [Int]
    let slots: [UInt32]
    /// Deliveries (instances with an online member) and recipients (online members) per channel.
    let deliveries: [Int]
    let recipients: [Int]

    static func userID(_ index: Int) -> String { "u\(index)" }
    static func instanceID(_ index: Int) -> String { "notifier-\(index + 1)" }

    init(_ shape: Shape) {
        self.shape = shape
        var rng = SplitMix64(seed: shape.seed)
        func uniform() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }
        var members: [[Int]] = []
        members.reserveCapacity(shape.channels)
        for channel in 0..<shape.channels {
            var size: Int
            if shape.largeEvery > 0 && channel % shape.largeEvery == shape.largeEvery - 1 {
                size = shape.largeMembers
            } else {
                // Log-normal around the median (sigma 0.6: most channels 20–150 members).
                let z = (-2 * log(max(uniform(), 1e-12))).squareRoot() * cos(2 * Double.pi * uniform())
                size = Int((Double(shape.medianMembers) * exp(0.6 * z)).rounded())
            }
            size = min(max(2, size), shape.users)
            var chosen = Set<Int>()
            if size * 2 > shape.users {
                var all = Array(0..<shape.users)
                for index in 0..<size { all.swapAt(index, index + Int(rng.next() % UInt64(shape.users - index))) }
                chosen = Set(all.prefix(size))
            } else {
                while chosen.count < size { chosen.insert(Int(rng.next() % UInt64(shape.users))) }
            }
            members.append(chosen.sorted())
        }
        var instanceOf = [Int](repeating: -1, count: shape.users)
        var slots = [UInt32](repeating: 0, count: shape.users)
        var nextSlot = [UInt32](repeating: 0, count: max(1, shape.instances))
        for user in 0..<shape.users where uniform() < shape.onlineFraction {
            let instance = Int(rng.next() % UInt64(max(1, shape.instances)))
            instanceOf[user] = instance
            slots[user] = nextSlot[instance]
            nextSlot[instance] += 1
        }
        channelIDs = (0..<shape.channels).map { "ch\($0)" }
        partitions = channelIDs.map { Partitioner.partition(of: $0, count: shape.partitionCount) }
        eventSubjects = channelIDs.map { Subjects.event(channel: $0, partitionCount: shape.partitionCount) }
        deliveries = members.map { Set($0.compactMap { instanceOf[$0] >= 0 ? instanceOf[$0] : nil }).count }
        recipients = members.map { $0.reduce(0) { $0 + (instanceOf[$1] >= 0 ? 1 : 0) } }
        self.members = members
        self.instanceOf = instanceOf
        self.slots = slots
    }

    var membershipCount: Int { members.reduce(0) { $0 + $1.count } }
    var onlineCount: Int { instanceOf.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
    var medianChannelSize: Int { members.map(\.count).sorted()[members.count / 2] }
    var largestChannelSize: Int { members.map(\.count).max() ?? 0 }

    /// The channel of event `index` of a phase (uniform, deterministic per phase salt).
    func channel(ofEvent index: Int, salt: UInt64) -> Int {
        var rng = SplitMix64(seed: shape.seed &+ salt &* 0x1000_0000 &+ UInt64(index))
        return Int(rng.next() % UInt64(shape.channels))
    }

    private static let padding = String(repeating: "x", count: 48)

    /// A `message_created` event whose text starts with `t=<sentNs>`.
    func event(channel: Int, id: String, sentNs: UInt64) -> [UInt8] {
        let sender = Self.userID(members[channel][0])
        return ChatEvent(
            eventID: id, channelID: channelIDs[channel], senderID: sender,
            createdAtMs: Int64(Date().timeIntervalSince1970 * 1000),
            body: .messageCreated(messageID: id, text: "t=\(sentNs) \(Self.padding)")
        ).encoded()
    }

    /// The publish instant carried by an event built by `event(channel:id:sentNs:)`.
    static func sentNs(ofEvent bytes: some Collection<UInt8>) -> UInt64? {
        guard let event = try? ChatEvent(decoding: bytes), case .messageCreated(_, let text)? = event.body else { return nil }
        var utf8 = text.utf8.makeIterator()
        guard utf8.next() == UInt8(ascii: "t"), utf8.next() == UInt8(ascii: "=") else { return nil }
        var value: UInt64 = 0
        var digits = 0
        while let byte = utf8.next(), byte >= 48, byte <= 57 {
            value = value &* 10 &+ UInt64(byte - 48)
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}
