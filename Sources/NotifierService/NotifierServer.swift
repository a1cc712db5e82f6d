import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import ServiceSupport
import SwitchboardContracts

/// The notifier's listener: `/ws`, the operations endpoints and the executable's routes on
/// one port. `run()` binds and serves; on graceful shutdown it drains — `/readyz` and `/ws`
/// answer 503 while every socket is closed with 4000 "reconnect" spread over the drain
/// window — and only then closes the listener.
final class NotifierServer: Service, Sendable {
    private let configuration: NotifierConfiguration
    private let registry: SessionRegistry
    private let pipeline: WebSocketPipeline
    private let eventLoops: any EventLoopGroup
    private let logger: Logger
    private let natsConnected: @Sendable () -> Bool
    private let listener = NIOLockedValueBox<(any Channel)?>(nil)

    init(
        configuration: NotifierConfiguration, registry: SessionRegistry, pipeline: (OperationsEndpoints) -> WebSocketPipeline,
        eventLoops: any EventLoopGroup, natsConnected: @escaping @Sendable () -> Bool,
        presenceConnected: @escaping @Sendable () -> Bool, metricsText: (@Sendable () -> [UInt8])?, logger: Logger
    ) {
        self.configuration = configuration
        self.registry = registry
        self.eventLoops = eventLoops
        self.natsConnected = natsConnected
        self.logger = logger
        let listener = listener
        let endpoints = OperationsEndpoints(
            // Ready: listening, NATS connected (or deliveries could not arrive), not draining.
            // Redis is not required: presence catches up when it returns.
            readiness: { listener.withLockedValue { $0 != nil } && !registry.isDraining && natsConnected() },
            readinessNote: { presenceConnected() ? "presence ok" : "presence degraded (Redis unreachable)" },
            metrics: metricsText
        )
        self.pipeline = pipeline(endpoints)
    }

    /// The port the listener is bound to (useful with port 0), or nil before it is.
    var port: Int? { listener.withLockedValue { $0?.localAddress?.port } }

    func run() async throws {
        let config = configuration
        let pipeline = pipeline
        let bootstrap = ServerBootstrap(group: eventLoops)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: config.outboundBufferBytes / 2, high: config.outboundBufferBytes))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try pipeline.configure(channel) }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: config.host, port: config.port).get()
        } catch {
            throw NotifierService.Error.bind(host: config.host, port: config.port, underlying: "\(error)")
        }
        listener.withLockedValue { $0 = channel }
        logger.info("notifier listening", metadata: [
            "instance": "\(config.instanceID)", "address": "\(channel.localAddress.map { "\($0)" } ?? "?")",
            "inbox": "\(Subjects.inbox(instance: config.instanceID))",
        ])
        // Returns on graceful shutdown; throws on cancellation. Drain in both cases.
        try? await gracefulShutdown()
        await drain()
        try? await channel.close()
    }

    /// Reports not ready, closes every socket with 4000 spread over the drain window, and
    /// waits until they are gone (bounded by the window plus the close handshake timeout).
    private func drain() async {
        guard registry.beginDrain() else { return }
        // INSTANCE_DOWN and deleting the hash (the registrar's shutdown, after this one)
        // supersede per-user OFFLINE updates; skipping them keeps Redis traffic flat however
        // many sockets close now.
        registry.setPresenceSink(nil)
        let sockets = registry.closeAll(spreadOver: TimeAmount(configuration.drainWindow), becauseNATSReconnected: false)
        logger.info("notifier draining", metadata: ["sockets": "\(sockets)", "window_s": "\(configuration.drainWindow)"])
        await registry.waitUntilEmpty(deadline: .now + configuration.drainWindow + configuration.closeHandshakeTimeout + .milliseconds(500))
    }
}
