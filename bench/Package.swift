// swift-tools-version:6.1
import PackageDescription

// The benchmarks, a package of their own so that building and testing Switchboard never builds
// them. They depend on the product modules and on SwitchboardHarness (the process launcher,
// server fixtures, HTTP probe and WebSocket clients the tests use too) of the package above.
let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "SwitchboardBench",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "Switchboard", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // `switchboard-bench <subcommand>`: the benchmarks against real servers (bench/README.md).
        .executableTarget(
            name: "switchboard-bench",
            dependencies: [
                .product(name: "RoutingCore", package: "Switchboard"),
                .product(name: "NATSClient", package: "Switchboard"),
                .product(name: "RedisClient", package: "Switchboard"),
                .product(name: "SwitchboardProto", package: "Switchboard"),
                .product(name: "FanoutService", package: "Switchboard"),
                .product(name: "NotifierService", package: "Switchboard"),
                .product(name: "SwitchboardHarness", package: "Switchboard"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
    ]
)
