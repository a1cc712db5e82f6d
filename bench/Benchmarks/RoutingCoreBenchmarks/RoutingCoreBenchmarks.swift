import Benchmark
import RoutingCore
import RoutingWorkloads
import SwitchboardHarness

// Micro-benchmarks of the routing core on package-benchmark: time and allocations per
// operation. Run from the repository root:
//   swift package --package-path bench benchmark --target RoutingCoreBenchmarks
// Planning is designed to allocate nothing once its buffer has grown (the slot arrays keep
// their capacity from event to event); its threshold holds it to zero mallocs.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 3,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )
    planningBenchmarks()
    memberSetBenchmarks()
    routingImageBenchmarks()
}

/// A plan buffer kept across iterations, as the fan-out keeps one per partition thread.
final class PlanningState {
    let channel: PlanningChannel
    var buffer = PlanBuffer()

    init(_ channel: PlanningChannel) {
        self.channel = channel
        // The first plan grows the buffer; every later one reuses it.
        _ = channel.plan(into: &buffer)
    }
}

func planningBenchmarks() {
    let noAllocations: [BenchmarkMetric: BenchmarkThresholds] = [.mallocCountTotal: .init(absolute: [.p0: 0, .p50: 0, .p100: 0])]
    for percent in [1, 10] {
        Benchmark(
            "plan 100k-member channel, \(percent)% online",
            configuration: .init(thresholds: noAllocations)
        ) { benchmark, state in
            for _ in benchmark.scaledIterations {
                blackHole(state.channel.plan(into: &state.buffer))
            }
        } setup: {
            PlanningState(try PlanningChannel(members: 100_000, onlinePercent: percent))
        }
    }
}

/// 100 000 members (every other id of 0..<200 000) and 1 000 probes, half of them members.
struct MemberSetState: Sendable {
    let members: MemberSet
    let newcomers: [UInt32]
    let probes: [UInt32]

    init() {
        members = MemberSet(sorted: (0..<100_000).map { UInt32($0 * 2) })
        var random = SplitMix64(seed: 7)
        newcomers = (0..<1_000).map { _ in UInt32(random.next() % 100_000) * 2 + 1 }
        probes = (0..<1_000).map { _ in UInt32(random.next() % 200_000) }
    }
}

func memberSetBenchmarks() {
    Benchmark("MemberSet insert 1000 ids into 100k") { benchmark, state in
        for _ in benchmark.scaledIterations {
            var set = state.members
            for id in state.newcomers { blackHole(set.insert(id)) }
            blackHole(set.count)
        }
    } setup: {
        MemberSetState()
    }

    Benchmark("MemberSet contains, 1000 probes in 100k") { benchmark, state in
        for _ in benchmark.scaledIterations {
            var found = 0
            for id in state.probes where state.members.contains(id) { found += 1 }
            blackHole(found)
        }
    } setup: {
        MemberSetState()
    }

    Benchmark("MemberSet iterate 100k") { benchmark, state in
        for _ in benchmark.scaledIterations {
            var sum: UInt64 = 0
            state.members.forEach { sum &+= UInt64($0) }
            blackHole(sum)
        }
    } setup: {
        MemberSetState()
    }
}

/// One partition's table of 1 M memberships (the `core` dataset's shape at that size) and its image.
struct ImageState: Sendable {
    let table: RoutingTable
    let image: [UInt8]

    init() throws {
        let dataset = Dataset(Dataset.Shape(users: 50_000, channels: 5_000, memberships: 1_000_000, online: 5_000, instances: 16))
        var table = RoutingTable(partitions: [0], partitionCount: 1)
        let users = (0..<dataset.shape.users).map(Dataset.userID)
        let channels = (0..<dataset.shape.channels).map(Dataset.channelID)
        try dataset.forEachMembership { channel, user in
            try table.applyMembership(partition: 0, channel: channels[channel], user: users[user], state: .joined, version: 1)
        }
        table.compact()
        self.table = table
        image = RoutingImage.encode(table, partition: 0)
    }
}

func routingImageBenchmarks() {
    let configuration = Benchmark.Configuration(warmupIterations: 1, maxDuration: .seconds(5), maxIterations: 100)
    Benchmark("RoutingImage encode 1M memberships", configuration: configuration) { benchmark, state in
        for _ in benchmark.scaledIterations {
            blackHole(RoutingImage.encode(state.table, partition: 0))
        }
    } setup: {
        try ImageState()
    }

    Benchmark("RoutingImage decode and load 1M memberships", configuration: configuration) { benchmark, state in
        for _ in benchmark.scaledIterations {
            var table = RoutingTable(partitions: [0], partitionCount: 1)
            do {
                try RoutingImage.load(state.image, partition: 0, into: &table)
            } catch {
                benchmark.error("image did not load: \(error)")
            }
            blackHole(table.membershipCount)
        }
    } setup: {
        try ImageState()
    }
}
