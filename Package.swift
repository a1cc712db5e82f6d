// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "Switchboard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "fanout", targets: ["fanout"]),
        .executable(name: "notifier", targets: ["notifier"]),
        .executable(name: "routectl", targets: ["routectl"]),
        // Libraries for the bench package (bench/Package.swift), which depends on this one by path.
        .library(name: "RoutingCore", targets: ["RoutingCore"]),
        .library(name: "NATSClient", targets: ["NATSClient"]),
        .library(name: "RedisClient", targets: ["RedisClient"]),
        .library(name: "SwitchboardProto", targets: ["SwitchboardProto"]),
        .library(name: "FanoutService", targets: ["FanoutService"]),
        .library(name: "NotifierService", targets: ["NotifierService"]),
        .library(name: "NotifierDemo", targets: ["NotifierDemo"]),
        .library(name: "SwitchboardContracts", targets: ["SwitchboardContracts"]),
        .library(name: "SwitchboardHarness", targets: ["SwitchboardHarness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // C libraries, found through pkg-config; nothing outside the wrapper modules imports them.
        .systemLibrary(name: "CNATS", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        // protobuf-c output of proto/generate.sh, committed; nothing hand-written.
        .target(name: "CSwitchboardProto", dependencies: ["CProtobufC"]),

        // Thin Swift owners of the C handles.
        .target(name: "NATSClient", dependencies: ["CNATS", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        .target(name: "RedisClient", dependencies: ["CHiredis"], swiftSettings: strict),
        .target(name: "SwitchboardProto", dependencies: ["CSwitchboardProto", "SwitchboardContracts"], swiftSettings: strict),

        // The contracts between processes: subjects, stream names and definitions, Redis keys,
        // NATS headers, inspection messages, client frame names. Standard library + Foundation.
        .target(name: "SwitchboardContracts", swiftSettings: strict),

        // Pure routing core: no I/O, standard library and the contracts only.
        .target(name: "RoutingCore", dependencies: ["SwitchboardContracts"], swiftSettings: strict),

        // What both services share: configuration from flags/env, ops HTTP, metrics, logging.
        .target(
            name: "ServiceSupport",
            dependencies: [
                "NATSClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "FanoutService",
            dependencies: [
                "SwitchboardContracts", "RoutingCore", "NATSClient", "RedisClient", "SwitchboardProto", "ServiceSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "NotifierService",
            dependencies: [
                "SwitchboardContracts", "NATSClient", "RedisClient", "SwitchboardProto", "ServiceSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Development helpers the `notifier` executable wires in: the demo page, its send
        // endpoint, a token issuer for tests and benchmarks. Never part of the product module.
        .target(
            name: "NotifierDemo",
            dependencies: [
                "NotifierService", "SwitchboardContracts", "NATSClient", "SwitchboardProto", "ServiceSupport",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strict
        ),

        // Thin executables: parse configuration, run.
        .executableTarget(
            name: "fanout",
            dependencies: ["FanoutService", "RedisClient", "ServiceSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "notifier",
            dependencies: ["NotifierService", "NotifierDemo", "RedisClient", "ServiceSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "routectl",
            dependencies: [
                "SwitchboardContracts", "NATSClient", "SwitchboardProto", "ServiceSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Test and bench support, not product code: the process launcher, fixtures that start real
        // nats-server / redis-server, the HTTP probe, WebSocket clients. The tests and the bench use it.
        .target(
            name: "SwitchboardHarness",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                "NATSClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "SwitchboardContractsTests", dependencies: ["SwitchboardContracts", "SwitchboardHarness"], swiftSettings: strict),
        .testTarget(
            name: "RoutingCoreTests",
            dependencies: ["RoutingCore", "SwitchboardContracts", "SwitchboardHarness", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NotifierDemoTests",
            dependencies: ["NotifierDemo", "NotifierService", "ServiceSupport", .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(name: "SwitchboardProtoTests", dependencies: ["SwitchboardProto", "SwitchboardHarness"], swiftSettings: strict),
        .testTarget(name: "NATSClientTests", dependencies: ["NATSClient", "SwitchboardHarness", "SwitchboardContracts", .product(name: "PropertyBased", package: "swift-property-based")], swiftSettings: strict),
        .testTarget(name: "RedisClientTests", dependencies: ["RedisClient", "SwitchboardHarness", "SwitchboardContracts"], swiftSettings: strict),
        .testTarget(
            name: "FanoutServiceTests",
            dependencies: ["FanoutService", "ServiceSupport", "SwitchboardHarness", "SwitchboardProto", "SwitchboardContracts"],
            exclude: ["Peers"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NotifierServiceTests",
            dependencies: [
                "NotifierService", "NotifierDemo", "ServiceSupport", "SwitchboardHarness", "NATSClient", "RedisClient", "SwitchboardProto", "SwitchboardContracts",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["SwitchboardHarness", "NATSClient", "RedisClient", "SwitchboardProto", "SwitchboardContracts", "RoutingCore", "NotifierService", "NotifierDemo"],
            exclude: ["Peers"],
            swiftSettings: strict
        ),
    ]
)
