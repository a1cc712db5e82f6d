import ArgumentParser
import Foundation
import RoutingCore
import RoutingWorkloads
import SwitchboardContracts

/// `switchboard-bench core`: routing-table memory per membership, membership apply rate,
/// snapshot image size and speed, and planning throughput — the pure core, no servers.
struct CoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Micro-benchmarks of the routing core: bytes per membership and planning throughput."
    )

    @Option(help: "Membership counts to build tables for (comma-separated).")
    var memberships = "1000000,20000000"

    @Option(help: "Also build the naive [String: Set<String>] model up to this many memberships, for the ratio.")
    var naiveUpTo = 1_000_000

    @Option(help: "Seconds to spend on each planning case.")
    var planSeconds = 0.5

    @Option(help: "Plans per case instead of a time budget (for allocation counting under valgrind).")
    var planIterations: Int?

    @Flag(help: "Only the planning cases.")
    var planOnly = false

    static let partitionCount = 16

    func run() throws {
        print("machine: \(Machine.description)")
        print("command: switchboard-bench core \(CommandLine.arguments.dropFirst(2).joined(separator: " "))")
        if !planOnly {
            for count in memberships.split(separator: ",").compactMap({ Int($0) }) { try memory(count) }
        }
        try planning()
    }

    /// Shapes scale with the membership count: about 20 memberships per user and 200 per
    /// channel, as in the `large` cold-start preset (1 M users, 100 k channels at 20 M).
    static func shape(memberships: Int) -> Dataset.Shape {
        Dataset.Shape(users: max(1000, memberships / 20), channels: max(100, memberships / 200), memberships: memberships,
                      heavyUsers: 10, heavyUserChannels: 100_000, online: max(100, memberships / 200), instances: 16)
    }

    /// Memberships per applied batch: the fan-out's membership feed reads up to this many at once.
    static let applyBatch = 1_024

    func memory(_ target: Int) throws {
        let dataset = Dataset(Self.shape(memberships: target))
        let users = (0..<dataset.shape.users).map(Dataset.userID)
        let channels = (0..<dataset.shape.channels).map(Dataset.channelID)
        let partitions = channels.map { Partitioner.partition(of: $0, count: Self.partitionCount) }
        print("\n## \(dataset.membershipCount) memberships: \(dataset.shape.users) users, \(dataset.shape.channels) channels (largest \(dataset.channelSizes[0]) members), \(dataset.shape.heavyUsers) users in \(min(dataset.shape.heavyUserChannels, dataset.shape.channels)) channels each")

        let rssBefore = Machine.residentBytes
        var table = RoutingTable(partitions: Array(0..<Self.partitionCount), partitionCount: Self.partitionCount)
        let started = ContinuousClock.now
        // In batches, as the fan-out's membership feed applies them (its user index warmed per batch).
        var batch: [(channel: Int, user: Int)] = []
        batch.reserveCapacity(Self.applyBatch)
        func applyBatch() throws {
            table.prefetchUsers(batch.map { users[$0.user] })
            for (channel, user) in batch {
                try table.applyMembership(partition: partitions[channel], channel: channels[channel], user: users[user], state: .joined, version: 1)
            }
            batch.removeAll(keepingCapacity: true)
        }
        try dataset.forEachMembership { channel, user in
            batch.append((channel, user))
            if batch.count == Self.applyBatch { try applyBatch() }
        }
        try applyBatch()
        let applySeconds = (ContinuousClock.now - started).seconds
        table.compact()
        let rssTable = Machine.residentBytes - rssBefore
        let memberships = table.membershipCount
        let channelBytes = table.channelBytes
        let sets = table.partitions.values.reduce(0) { $0 + $1.members.reduce(0) { $0 + $1.byteCount } }
        let gaps = table.partitions.values.reduce(0) { $0 + $1.members.reduce(0) { $0 + $1.payloadBytes } }
        print(String(format: "member sets %.1f MB, of which Rice-coded gaps %.1f MB (%.2f bits/membership); channel ids and index %.1f MB",
                     Double(sets) / 1e6, Double(gaps) / 1e6, Double(gaps * 8) / Double(memberships), Double(channelBytes - sets) / 1e6))
        print(String(format: "table: %.2f bytes/membership (member sets + channel index, self-accounted: %.1f MB); user ids %.1f MB; RSS growth %.1f MB incl. ids",
                     Double(channelBytes) / Double(memberships), Double(channelBytes) / 1e6, Double(table.users.byteCount) / 1e6, Double(rssTable) / 1e6))
        print(String(format: "apply: %.0f memberships/s (%.2f s, strings interned on the way)", Double(memberships) / applySeconds, applySeconds))

        var imageBytes = 0
        var encodeSeconds = 0.0, loadSeconds = 0.0
        var restored = RoutingTable(partitions: Array(0..<Self.partitionCount), partitionCount: Self.partitionCount)
        // The user dictionary the images refer to, written and interned once for all of them.
        var dictionary: [UInt32] = []
        repeat {
            let t0 = ContinuousClock.now
            let (bytes, _) = UserDictionary.segment(of: table.users, lineage: 1, from: dictionary.count, maxBytes: 1_000_000)
            let t1 = ContinuousClock.now
            dictionary += restored.internUsers(of: try UserDictionary.decode(bytes, lineage: 1, first: dictionary.count))
            loadSeconds += (ContinuousClock.now - t1).seconds
            encodeSeconds += (t1 - t0).seconds
            imageBytes += bytes.count
        } while dictionary.count < table.users.count
        for partition in 0..<Self.partitionCount {
            let t0 = ContinuousClock.now
            let image = RoutingImage.encode(table, partition: partition)
            let t1 = ContinuousClock.now
            try RoutingImage.load(image, partition: partition, into: &restored, dictionary: dictionary)
            loadSeconds += (ContinuousClock.now - t1).seconds
            encodeSeconds += (t1 - t0).seconds
            imageBytes += image.count
        }
        precondition(restored.membershipCount == memberships, "image round trip lost memberships")
        print(String(format: "images with their user dictionary: %.2f bytes/membership (%.1f MB); encode %.2f s, load %.2f s (%.0f memberships/s)",
                     Double(imageBytes) / Double(memberships), Double(imageBytes) / 1e6, encodeSeconds, loadSeconds, Double(memberships) / loadSeconds))
        restored = RoutingTable(partitions: [], partitionCount: Self.partitionCount)

        if target <= naiveUpTo {
            table = RoutingTable(partitions: [], partitionCount: Self.partitionCount)
            let rssNaiveBefore = Machine.residentBytes
            var naive: [String: Set<String>] = [:]
            dataset.forEachMembership { channel, user in naive[channels[channel], default: []].insert(users[user]) }
            let naiveBytes = Machine.residentBytes - rssNaiveBefore
            let count = naive.values.reduce(0) { $0 + $1.count }
            print(String(format: "naive [String: Set<String>]: RSS growth %.1f MB = %.1f bytes/membership; ratio to the table's RSS growth: %.1fx",
                         Double(naiveBytes) / 1e6, Double(naiveBytes) / Double(count), Double(naiveBytes) / Double(max(1, rssTable))))
        }
    }

    func planning() throws {
        print("\n## planning (one thread; users spread over 16 instances)")
        print("| channel members | online | recipients/plan | recipients/s | plans/s |")
        print("|---:|---:|---:|---:|---:|")
        for members in [10, 1_000, 100_000] {
            for percent in [1, 10, 50] {
                let channel = try PlanningChannel(members: members, onlinePercent: percent, partitionCount: Self.partitionCount)
                var plan = PlanBuffer()
                var plans = 0, recipients = 0
                let started = ContinuousClock.now
                if let iterations = planIterations {
                    for _ in 0..<iterations { recipients += channel.plan(into: &plan) }
                    plans = iterations
                } else {
                    while (ContinuousClock.now - started).seconds < planSeconds {
                        for _ in 0..<16 { recipients += channel.plan(into: &plan) }
                        plans += 16
                    }
                }
                let seconds = (ContinuousClock.now - started).seconds
                print(String(format: "| %d | %d%% | %d | %.2e | %.0f |", members, percent, recipients / max(1, plans), Double(recipients) / seconds, Double(plans) / seconds))
            }
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
