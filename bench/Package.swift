// swift-tools-version:6.1
import PackageDescription

// The benchmarks, a package of their own so that building and testing Switchboard never builds
// them. They depend on the product modules and on SwitchboardHarness (the process launcher,
// server fixtures, HTTP probe and WebSocket clients the tests use too) of the package above.
let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

/// Products of the package above and of swift-nio, by name.
func switchboard(_ names: String...) -> [Target.Dependency] { names.map { .product(name: $0, package: "Switchboard") } }
func nio(_ names: String...) -> [Target.Dependency] { names.map { .product(name: $0, package: "swift-nio") } }

let package = Package(
    name: "SwitchboardBench",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "Switchboard", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // Allocation counts need the malloc interposer; the runtime interposer is not wanted.
        .package(url: "https://github.com/ordo-one/package-benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Generated datasets and the planning fixture both kinds of benchmark use.
        .target(
            name: "RoutingWorkloads",
            dependencies: switchboard("RoutingCore", "SwitchboardContracts", "SwitchboardHarness"),
            swiftSettings: strict
        ),
        // The load client of `switchboard-bench peer`: WebSocket sockets on one epoll thread.
        .target(name: "CPeerClient"),
        // `switchboard-bench <subcommand>`: the benchmarks against real servers (bench/README.md).
        .executableTarget(
            name: "switchboard-bench",
            dependencies: ["RoutingWorkloads", "CPeerClient"]
                + switchboard("SwitchboardContracts", "RoutingCore", "NATSClient", "RedisClient", "SwitchboardProto", "FanoutService", "NotifierService", "NotifierDemo", "SwitchboardHarness")
                + nio("NIOCore", "NIOPosix", "NIOHTTP1", "NIOWebSocket")
                + [
                    .product(name: "ArgumentParser", package: "swift-argument-parser"),
                    .product(name: "Histogram", package: "hdrhistogram-swift"),
                ],
            swiftSettings: strict
        ),
        // Micro-benchmarks of the routing core (time and allocations per operation):
        // `swift package --package-path bench benchmark`.
        .executableTarget(
            name: "RoutingCoreBenchmarks",
            dependencies: ["RoutingWorkloads", .product(name: "Benchmark", package: "package-benchmark")]
                + switchboard("RoutingCore", "SwitchboardHarness"),
            path: "Benchmarks/RoutingCoreBenchmarks",
            swiftSettings: strict,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ]
)
