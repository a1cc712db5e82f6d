import RoutingCore
import SwitchboardContracts

/// One channel planned again and again: `members` members spread evenly over `users` users,
/// `onlinePercent` % of them online, round-robin over `instances` notifier instances. Both
/// `switchboard-bench core` (recipients per second) and the planning micro-benchmarks
/// (time and allocations per plan) plan against it.
public struct PlanningChannel: Sendable {
    public let channel: String
    public let partition: Int
    public let onlineMembers: Int
    public private(set) var table: RoutingTable

    public init(members: Int, onlinePercent: Int, users: Int = 200_000, instances: Int = 16, partitionCount: Int = 16) throws {
        channel = "bench-\(members)"
        partition = Partitioner.partition(of: channel, count: partitionCount)
        table = RoutingTable(partitions: Array(0..<partitionCount), partitionCount: partitionCount)
        let stride = users / members
        for index in 0..<members {
            try table.applyMembership(partition: partition, channel: channel, user: Dataset.userID(index * stride), state: .joined, version: 1)
        }
        // Members whose index falls in the first `onlinePercent` of every hundred are online.
        var online = 0
        for index in 0..<members where (index * onlinePercent) % 100 < onlinePercent {
            try table.applyPresence(instance: Dataset.instanceID(online % instances), epoch: 1,
                                    .online(user: Dataset.userID(index * stride), slot: UInt32(online / instances)))
            online += 1
        }
        onlineMembers = online
        table.compact()
    }

    /// Plans the channel's event into `buffer`; returns the recipients.
    @inline(__always)
    public func plan(into buffer: inout PlanBuffer) -> Int {
        table.plan(partition: partition, channel: channel, into: &buffer)
    }
}
