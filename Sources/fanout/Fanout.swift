import ArgumentParser
import FanoutService
import Foundation
import RedisClient
import Logging
import ServiceLifecycle
import ServiceSupport

/// `fanout`: one fan-out replica. Every flag has an env fallback (SWITCHBOARD_<FLAG>).
@main
struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Switchboard fan-out replica: JetStream chat events in, one delivery per notifier instance out."
    )

    @Option(help: "NATS server URL(s), comma-separated; user:password@ (or a token@) in a URL authenticates.") var natsURL = "nats://127.0.0.1:4222"
    @OptionGroup var nats: NATSAccessOptions
    @Option(help: "Redis URL (presence); redis://[user]:password@host:port authenticates.") var redisURL = "redis://127.0.0.1:6379"
    @Option(help: "Redis ACL user, with --redis-password-file.") var redisUser: String?
    @Option(help: "File holding the Redis password (a trailing newline is trimmed).") var redisPasswordFile: String?
    @Option(help: "Partitions of the deployment (fixed; must match streams/deployment.json).") var partitionCount = 16
    @Option(help: "Partitions this replica owns, e.g. 0-15, 0-7 or 1,3,8-11. Default: all.") var partitions: String?
    @Option(help: "Own the ordinal-th share of the partitions among --replicas (StatefulSet pods: fanout-<ordinal>).") var ordinal: Int?
    @Option(help: "Number of replicas splitting the partitions (with --ordinal).") var replicas: Int?
    @Option(help: "Replicas per share (with --ordinal): 2 runs each share as an active replica and a warm standby; ordinals N and N + replicas/copies share.") var copies = 1
    @Option(help: "Name of this replica in logs and inspection replies.") var replicaID: String?
    @Option(help: "host:port of /healthz, /readyz and /metrics.") var http = "127.0.0.1:9090"
    @Option(help: "Folder with the stream definitions (streams/*.json).") var streamsDir = "streams"
    @Option(help: "Replicas of every stream, overriding streams/*.json (3 on a three-node NATS cluster).") var streamReplicas: Int?
    @Option(help: "Write a partition snapshot after this many membership changes.") var snapshotEveryChanges = 100_000
    @Option(help: "...or this many seconds after the last one if anything changed.") var snapshotIntervalSeconds = 60
    @Option(help: "Threads consuming events; the owned partitions are dealt out among them.") var pipelineThreads = 1
    @Option(help: "Confirm (flush, then ack) deliveries at most this many milliseconds after the oldest unconfirmed one.") var ackIntervalMs = 50
    @Option(help: "Replicas owning the same partitions stand by for each other: a standby takes a partition over once its lease went this many milliseconds unrenewed.") var leaseTakeoverMs = 1_000
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    static let environmentOptions = [
        "nats-url", "redis-url", "redis-user", "redis-password-file", "partition-count", "partitions", "ordinal", "replicas", "copies", "replica-id", "http",
        "streams-dir", "stream-replicas", "snapshot-every-changes", "snapshot-interval-seconds", "pipeline-threads", "ack-interval-ms", "lease-takeover-ms", "log-level",
    ] + NATSAccessOptions.environmentNames

    /// Parsed by hand so that `--help` prints the help and exits 0, and any invalid flag,
    /// value or configuration is one line on stderr and exit status 1.
    static func main() async {
        let arguments = EnvironmentFallback.apply(
            to: Array(CommandLine.arguments.dropFirst()), options: environmentOptions,
            environment: ProcessInfo.processInfo.environment
        )
        let fanout: Fanout
        do {
            fanout = try parse(arguments)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }  // --help
            fail(message(for: error))
        }
        do {
            try await fanout.start()
        } catch let error as ConfigurationError {
            fail("invalid configuration: \(error)")
        } catch {
            fail("\(error)")
        }
    }

    /// The first line of `message` on stderr, then exit status 1.
    static func fail(_ message: String) -> Never {
        var line = message.split(separator: "\n").first.map(String.init) ?? message
        if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
        FileHandle.standardError.write(Data("fanout: \(line)\n".utf8))
        Foundation.exit(1)
    }

    func start() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw FanoutError.invalidConfiguration("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        let owned: PartitionSet
        switch (partitions, ordinal, replicas) {
        case (let spec?, nil, nil): owned = try PartitionSet(spec, count: partitionCount)
        case (nil, let ordinal?, let replicas?): owned = try PartitionSet.forOrdinal(ordinal, replicas: replicas, copies: copies, count: partitionCount)
        case (nil, nil, nil): owned = try PartitionSet("0-\(partitionCount - 1)", count: partitionCount)
        default: throw FanoutError.invalidConfiguration("use either --partitions or --ordinal with --replicas")
        }
        let (host, port) = try HostPort.parse(http, flag: "--http")
        var config = FanoutConfig(partitions: owned)
        config.natsURL = natsURL
        config.natsTLSCAFile = nats.natsTlsCa
        config.natsTLSCertFile = nats.natsTlsCert
        config.natsTLSKeyFile = nats.natsTlsKey
        config.natsAuthentication = nats.authentication
        config.redisURL = try RedisURL.withCredentials(redisURL, user: redisUser, passwordFile: redisPasswordFile)
        config.replicaID = replicaID ?? ordinal.map { "fanout-\($0)" } ?? "fanout-\(owned)"
        config.httpHost = host
        config.httpPort = port
        config.streamsDirectory = streamsDir
        config.streamReplicas = streamReplicas
        config.snapshotEveryChanges = snapshotEveryChanges
        config.snapshotInterval = .seconds(snapshotIntervalSeconds)
        guard pipelineThreads > 0 else { throw FanoutError.invalidConfiguration("--pipeline-threads must be at least 1") }
        guard (1...1_000).contains(ackIntervalMs) else { throw FanoutError.invalidConfiguration("--ack-interval-ms must be 1 to 1000 (well under the 5 s ack wait)") }
        config.pipelineThreads = pipelineThreads
        config.ackInterval = .milliseconds(ackIntervalMs)
        guard (200...30_000).contains(leaseTakeoverMs) else { throw FanoutError.invalidConfiguration("--lease-takeover-ms must be 200 to 30000") }
        config.leaseTakeoverAfter = .milliseconds(leaseTakeoverMs)

        LogSetup.bootstrap(label: "fanout", level: level)
        let registry = MetricsSetup.bootstrapPrometheus()
        let logger = Logger(label: "fanout")
        let service = FanoutService(config: config, logger: logger)
        let http = HTTPServer(configuration: .init(
            host: host, port: port,
            liveness: { true },
            readiness: { service.isReady },
            metrics: registry
        ), logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: http), .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}
