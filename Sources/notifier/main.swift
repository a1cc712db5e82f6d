import ArgumentParser
import Foundation
import Logging
import NotifierDemo
import NotifierService
import RedisClient
import ServiceLifecycle
import ServiceSupport

/// `notifier`: owns WebSocket connections for one instance id and routes its inbox to them.
struct Notifier: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifier",
        abstract: "Switchboard notifier: WebSocket connections, one NATS inbox, presence in Redis.",
        discussion: "Every option falls back to SWITCHBOARD_<OPTION> (upper snake case), e.g. SWITCHBOARD_INSTANCE_ID."
    )

    /// The long names of every option, for the environment fallback.
    static let optionNames = [
        "nats-url", "redis-url", "redis-user", "redis-password-file", "instance-id", "listen", "jwt-secret", "jwt-secret-file", "max-connections",
        "outbound-buffer-bytes", "heartbeat-seconds", "drain-seconds", "partition-count", "max-frame-bytes",
        "max-inbound-per-second", "event-loop-threads", "log-level", "demo-urls", "demo-client-js",
    ] + NATSAccessOptions.environmentNames

    @Option(help: "NATS server URL(s), comma-separated; user:password@ (or a token@) in a URL authenticates.") var natsUrl = "nats://127.0.0.1:4222"
    @OptionGroup var nats: NATSAccessOptions
    @Option(help: "Redis URL for presence.") var redisUrl = "redis://127.0.0.1:6379"
    @Option(help: "Redis ACL user, with --redis-password-file.") var redisUser: String?
    @Option(help: "File holding the Redis password (a trailing newline is trimmed).") var redisPasswordFile: String?
    @Option(help: "This instance's id (1-64 of A-Z a-z 0-9 _ -); names its inbox and presence hash.") var instanceId: String?
    @Option(help: "HOST:PORT for WebSocket (/ws) and HTTP (/healthz /readyz /metrics).") var listen = "127.0.0.1:8080"
    @Option(help: "HS256 secret for client tokens (prefer --jwt-secret-file).") var jwtSecret: String?
    @Option(help: "File holding the HS256 secret (trailing newline ignored).") var jwtSecretFile: String?
    @Option(help: "Open WebSocket connections at most (HTTP 503 past it).") var maxConnections = 50_000
    @Option(help: "Unsent bytes per socket at most; past it the socket is closed with 4008 (slow consumer). At least the largest event frame (197120).") var outboundBufferBytes = 262_144
    @Option(help: "Ping interval; a socket silent for two intervals is closed.") var heartbeatSeconds: Double = 15
    @Option(help: "On SIGTERM, sockets are closed with 4000 spread over this many seconds.") var drainSeconds: Double = 5
    @Option(help: "Partitions of the deployment (typing subjects).") var partitionCount = 16
    @Option(help: "Largest WebSocket message accepted from a client, one frame or its fragments together (close 1009 past it).") var maxFrameBytes = 16_384
    @Option(help: "Inbound messages per second per socket (close 1008 past it).") var maxInboundPerSecond: Double = 20
    @Option(help: "Event-loop threads (default: one per core).") var eventLoopThreads: Int?
    @Option(help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
    @Option(help: "The demo page's notifier WebSocket URLs, comma-separated (default: this notifier's own).") var demoUrls: String?
    @Option(help: "The JavaScript client the demo page runs on, served at /switchboard.js.") var demoClientJs = "clients/js/switchboard.js"
    @Flag(help: "Development only: enable POST /demo/send (the demo page publishes messages as the token's user; env SWITCHBOARD_DEMO_SEND=1).")
    var demoSend = false

    /// `--demo-send` is a flag without a value, so its environment fallback is handled here.
    static func applyDemoSendEnvironment(to arguments: [String], environment: [String: String]) -> [String] {
        let value = environment[EnvironmentFallback.variable(for: "demo-send")]?.lowercased()
        guard let value, ["1", "true", "yes"].contains(value), !arguments.contains("--demo-send") else { return arguments }
        return arguments + ["--demo-send"]
    }

    /// The configuration, or one line saying what is wrong.
    func makeConfiguration() throws(ValidationError) -> (NotifierConfiguration, Logger.Level) {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        guard let instanceId else { throw ValidationError("--instance-id is required (or SWITCHBOARD_INSTANCE_ID)") }
        let secret: [UInt8]
        if let jwtSecretFile {
            guard let data = FileManager.default.contents(atPath: jwtSecretFile) else {
                throw ValidationError("--jwt-secret-file: cannot read '\(jwtSecretFile)'")
            }
            var bytes = [UInt8](data)
            while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
            secret = bytes
        } else if let jwtSecret {
            secret = Array(jwtSecret.utf8)
        } else {
            throw ValidationError("--jwt-secret or --jwt-secret-file is required")
        }
        let host: String
        let port: Int
        do {
            (host, port) = try HostPort.parse(listen, flag: "--listen")
        } catch {
            throw ValidationError("\(error)")
        }
        var config = NotifierConfiguration(instanceID: instanceId, jwtSecret: secret)
        config.natsURL = natsUrl
        config.natsTLSCAFile = nats.natsTlsCa
        config.natsTLSCertFile = nats.natsTlsCert
        config.natsTLSKeyFile = nats.natsTlsKey
        config.natsAuthentication = nats.authentication
        do {
            config.redisURL = try RedisURL.withCredentials(redisUrl, user: redisUser, passwordFile: redisPasswordFile)
        } catch {
            throw ValidationError("\(error)")
        }
        config.host = host
        config.port = port
        config.maxConnections = maxConnections
        config.outboundBufferBytes = outboundBufferBytes
        guard heartbeatSeconds.isFinite, drainSeconds.isFinite, heartbeatSeconds > 0, drainSeconds >= 0 else {
            throw ValidationError("--heartbeat-seconds must be positive and --drain-seconds not negative")
        }
        config.heartbeatInterval = .milliseconds(Int64(heartbeatSeconds * 1000))
        config.drainWindow = .milliseconds(Int64(drainSeconds * 1000))
        config.partitionCount = partitionCount
        config.maxFrameBytes = maxFrameBytes
        config.maxInboundMessagesPerSecond = maxInboundPerSecond
        config.inboundBurst = max(1, maxInboundPerSecond * 2)
        if let eventLoopThreads { config.eventLoopThreads = eventLoopThreads }
        if let problem = config.problem() { throw ValidationError(problem) }
        return (config, level)
    }

    func run() async throws {
        var (config, level) = try makeConfiguration()
        NotifierService.sizeBlockingPool(for: config)
        LogSetup.bootstrap(label: "switchboard.notifier", level: level)
        let registry = MetricsSetup.bootstrapPrometheus()
        let logger = Logger(label: "switchboard.notifier")
        var sender: DemoSender?
        if demoSend {
            logger.warning("POST /demo/send is enabled: clients can publish messages (development only)")
            sender = await DemoSender(natsURL: config.natsURL, natsTLSCAFile: config.natsTLSCAFile, natsTLSCertFile: config.natsTLSCertFile,
                                      natsTLSKeyFile: config.natsTLSKeyFile, natsAuthentication: config.natsAuthentication, jwtSecret: config.jwtSecret, partitionCount: config.partitionCount)
        }
        let script = FileManager.default.contents(atPath: demoClientJs).map { [UInt8]($0) }
        if script == nil { logger.warning("demo page disabled: cannot read the client library", metadata: ["path": "\(demoClientJs)"]) }
        let urls = demoUrls.map { $0.split(separator: ",").map { String($0.filter { !$0.isWhitespace }) }.filter { !$0.isEmpty } } ?? []
        config.routes = DemoRoutes(sender: sender, urls: urls, clientScript: script)
        let service = NotifierService(configuration: config, logger: logger, metricsText: { MetricsSetup.render(registry) })
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

// Parse by hand so that any invalid configuration is one line on stderr and exit status 1.
let arguments = Notifier.applyDemoSendEnvironment(
    to: EnvironmentFallback.apply(
        to: Array(CommandLine.arguments.dropFirst()), options: Notifier.optionNames, environment: ProcessInfo.processInfo.environment
    ),
    environment: ProcessInfo.processInfo.environment
)
do {
    let notifier = try Notifier.parse(arguments)
    _ = try notifier.makeConfiguration()
    try await notifier.run()
} catch {
    let code = Notifier.exitCode(for: error)
    if code == .success {
        Notifier.exit(withError: error)  // --help, --version
    }
    let message = Notifier.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
    FileHandle.standardError.write(Data("notifier: \(message)\n".utf8))
    exit(1)
}
