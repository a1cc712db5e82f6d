import Logging
import NATSClient
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import SwitchboardContracts
import SwitchboardProto

/// One running notifier instance: the HTTP/WebSocket listener, the inbox subscription,
/// the presence registrar. `start()` brings it up; `drain()` takes it down gracefully.
/// `NotifierService` wraps it for swift-service-lifecycle.
public final class NotifierServer: Sendable {
    /// Errors of start-up.
    public enum Error: Swift.Error, CustomStringConvertible {
        case invalidConfiguration(String)
        case bind(host: String, port: Int, underlying: String)
        case nats(url: String, underlying: String)

        public var description: String {
            switch self {
            case .invalidConfiguration(let problem): problem
            case .bind(let host, let port, let underlying): "cannot listen on \(host):\(port): \(underlying)"
            case .nats(let url, let underlying): "NATS (\(url)): \(underlying)"
            }
        }
    }

    public let configuration: NotifierConfiguration
    private let logger: Logger
    private let metricsText: (@Sendable () -> [UInt8])?
    let metrics = NotifierMetrics()
    let registry: SessionRegistry
    private let group: MultiThreadedEventLoopGroup
    private let state = NIOLockedValueBox(RunState())

    private struct RunState {
        var serverChannel: (any Channel)?
        var nats: NATSConnection?
        var inbox: NATSSubscription?
        var presence: PresenceRegistrar?
        var replayer: EventReplayer?
        var ready = false
        var draining = false
        var drained = false
    }

    /// - Parameter metricsText: renders the process's metrics for `/metrics` (Prometheus
    ///   text); nil answers 404 there.
    public init(configuration: NotifierConfiguration, logger: Logger = Logger(label: "switchboard.notifier"), metricsText: (@Sendable () -> [UInt8])? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.metricsText = metricsText
        registry = SessionRegistry(maxConnections: configuration.maxConnections, slotReuseDelay: configuration.slotReuseDelay, metrics: metrics)
        group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
    }

    /// The port the listener is bound to (useful with port 0), or nil before `start()`.
    public var port: Int? { state.withLockedValue { $0.serverChannel?.localAddress?.port } }

    /// Ready: listening, the inbox subscribed and NATS connected (or deliveries could not
    /// arrive), not draining. Redis is not required: presence catches up when it returns.
    public var isReady: Bool {
        let (ready, nats) = state.withLockedValue { ($0.ready && !$0.draining, $0.nats) }
        return ready && (nats?.isConnected ?? false)
    }

    /// Whether presence is currently written to Redis (for `/readyz` and operators).
    public var isPresenceConnected: Bool { state.withLockedValue { $0.presence }?.isConnected ?? false }

    /// Connects to NATS, subscribes the inbox, starts the presence registrar, and listens.
    public func start() async throws {
        if let problem = configuration.problem() { throw Error.invalidConfiguration(problem) }
        let config = configuration
        let authenticator = await TokenAuthenticator(secret: config.jwtSecret, leeway: config.jwtLeeway)

        let nats: NATSConnection
        do {
            nats = try NATSConnection(options: .init(
                url: config.natsURL, name: "notifier-\(config.instanceID)",
                onConnectionEvent: { [weak self] event in self?.natsConnectionChanged(event) }
            ))
        } catch {
            throw Error.nats(url: config.natsURL, underlying: "\(error)")
        }
        let dispatcher = InboxDispatcher(registry: registry, metrics: metrics)
        let inbox: NATSSubscription
        do {
            inbox = try nats.subscribe(Subjects.inbox(instance: config.instanceID)) { message in
                dispatcher.dispatch(kind: message.headers[InboxKind.header], payload: message.payload)
            }
            try nats.flush(timeout: .seconds(5))
        } catch {
            nats.close()
            throw Error.nats(url: config.natsURL, underlying: "\(error)")
        }

        // Resume needs JetStream; without it clients still get live events.
        let replayer: EventReplayer?
        do {
            replayer = EventReplayer(jetStream: try nats.jetStream(), partitionCount: config.partitionCount, maxEvents: config.maxReplayEvents)
        } catch {
            logger.warning("resume disabled: no JetStream context", metadata: ["error": "\(error)"])
            replayer = nil
        }

        let registry = registry
        let presence = PresenceRegistrar(
            instanceID: config.instanceID, redisURL: config.redisURL, heartbeat: config.presenceHeartbeat,
            queueLimit: config.presenceQueueLimit, metrics: metrics, logger: logger
        ) { registry.registrations() }
        registry.setPresenceSink(.init(
            online: { user, slot in presence.enqueue(.online(user: user, slot: slot)) },
            offline: { user, slot in presence.enqueue(.offline(user: user, slot: slot)) }
        ))
        presence.start()

        let logger = logger
        let metrics = metrics
        let partitionCount = config.partitionCount
        let environment = SessionEnvironment(
            instanceID: config.instanceID,
            registry: registry,
            metrics: metrics,
            heartbeatInterval: TimeAmount(config.heartbeatInterval),
            closeHandshakeTimeout: TimeAmount(config.closeHandshakeTimeout),
            typingPerSecond: config.typingPerSecond,
            publishTyping: { channel, user in
                let subject = Subjects.typing(channel: channel, partitionCount: partitionCount)
                do {
                    try nats.publish(subject, payload: Typing(channelID: channel, userID: user).encoded())
                } catch {
                    logger.debug("typing publish failed", metadata: ["subject": "\(subject)", "error": "\(error)"])
                }
            },
            replayer: replayer,
            logger: logger
        )
        let endpoints = OpsEndpoints(
            isReady: { [weak self] in self?.isReady ?? false },
            presenceConnected: { [weak self] in self?.isPresenceConnected ?? false },
            metricsText: metricsText
        )
        let pipeline = WebSocketPipeline(
            authenticator: authenticator, registry: registry, metrics: metrics, environment: environment, endpoints: endpoints,
            isDraining: { [weak self] in self?.state.withLockedValue { $0.draining } ?? true },
            maxFrameBytes: config.maxFrameBytes, maxMessageBytes: config.maxMessageBytes,
            inboundRate: config.maxInboundMessagesPerSecond, inboundBurst: config.inboundBurst
        )

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: config.outboundBufferBytes / 2, high: config.outboundBufferBytes))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try pipeline.configure(channel) }
            }
        let serverChannel: any Channel
        do {
            serverChannel = try await bootstrap.bind(host: config.host, port: config.port).get()
        } catch {
            inbox.unsubscribe()
            replayer?.shutdown()
            nats.close()
            await presence.stop(deregister: true)
            throw Error.bind(host: config.host, port: config.port, underlying: "\(error)")
        }
        state.withLockedValue {
            $0.serverChannel = serverChannel
            $0.nats = nats
            $0.inbox = inbox
            $0.presence = presence
            $0.replayer = replayer
            $0.ready = true
        }
        logger.info("notifier listening", metadata: [
            "instance": "\(config.instanceID)", "address": "\(serverChannel.localAddress.map { "\($0)" } ?? "?")",
            "inbox": "\(Subjects.inbox(instance: config.instanceID))",
        ])
    }

    /// Closes `sessions` with 4000 "reconnect", spread evenly over the drain window so that
    /// their reconnects (and resumes) do not arrive all at once.
    private func closeSpread(_ sessions: [WebSocketSession], becauseNATSReconnected: Bool) {
        let window = TimeAmount(configuration.drainWindow)
        for (index, session) in sessions.enumerated() {
            let delay: TimeAmount = sessions.count <= 1 ? .nanoseconds(0) : .nanoseconds(window.nanoseconds * Int64(index) / Int64(sessions.count))
            session.eventLoop.scheduleTask(in: delay) { session.closeForDrain(becauseNATSReconnected: becauseNATSReconnected) }
        }
    }

    /// Deliveries are core NATS: whatever the fan-out sent while this connection was down
    /// is gone, and a client cannot see the hole (`seq` is stream-wide). So after a reconnect
    /// every socket open at that moment is asked to reconnect (4000, spread over the drain
    /// window) and resume from its last seq, which replays exactly the missed events.
    private func natsConnectionChanged(_ event: ConnectionEvent) {
        switch event {
        case .disconnected:
            metrics.natsDisconnects.increment()
            logger.warning("NATS disconnected: no deliveries until it reconnects", metadata: ["instance": "\(configuration.instanceID)"])
        case .reconnected:
            guard !state.withLockedValue({ $0.draining }) else { return }
            let sessions = registry.allSessions()
            logger.warning("NATS reconnected: asking sockets to reconnect and resume what they may have missed", metadata: [
                "instance": "\(configuration.instanceID)", "sockets": "\(sessions.count)", "window_s": "\(configuration.drainWindow)",
            ])
            closeSpread(sessions, becauseNATSReconnected: true)
        }
    }

    /// Graceful drain: stop accepting, report not ready, close every socket with 4000
    /// "reconnect" spread over `drainWindow`, deregister presence, close NATS, stop the
    /// event loops. Bounded by `drainWindow + closeHandshakeTimeout` plus a few seconds
    /// for Redis and NATS. Idempotent.
    public func drain() async {
        let (serverChannel, nats, inbox, presence, replayer, first) = state.withLockedValue { state in
            let first = !state.draining
            state.draining = true
            state.ready = false
            return (state.serverChannel, state.nats, state.inbox, state.presence, state.replayer, first)
        }
        guard first else { return }
        // INSTANCE_DOWN and deleting the hash below supersede per-user OFFLINE updates;
        // skipping them keeps Redis traffic flat however many sockets close now.
        registry.setPresenceSink(nil)
        try? await serverChannel?.close()
        let sessions = registry.allSessions()
        logger.info("notifier draining", metadata: ["sockets": "\(sessions.count)", "window_s": "\(configuration.drainWindow)"])
        closeSpread(sessions, becauseNATSReconnected: false)
        let deadline = ContinuousClock.now + configuration.drainWindow + configuration.closeHandshakeTimeout + .milliseconds(500)
        while registry.socketCount > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        inbox?.unsubscribe()
        replayer?.shutdown()
        await presence?.stop(deregister: true)
        nats?.drain(timeout: .seconds(2))
        try? await group.shutdownGracefully()
        state.withLockedValue { $0.drained = true }
        logger.info("notifier drained", metadata: ["instance": "\(configuration.instanceID)"])
    }
}

/// Builds the per-connection pipeline: HTTP/1.1 with the WebSocket upgrader in front of
/// `HTTPRequestHandler`; after an upgrade, the WebSocket handlers.
struct WebSocketPipeline: Sendable {
    let authenticator: TokenAuthenticator
    let registry: SessionRegistry
    let metrics: NotifierMetrics
    let environment: SessionEnvironment
    let endpoints: OpsEndpoints
    let isDraining: @Sendable () -> Bool
    let maxFrameBytes: Int
    let maxMessageBytes: Int
    let inboundRate: Double
    let inboundBurst: Double

    func configure(_ channel: any Channel) throws {
        // Every TCP connection counts, upgraded or not: past the WebSocket limit plus some
        // headroom for probes and refusals, new connections are closed at once.
        guard registry.openTCPConnection(channel) else {
            metrics.refused(.capacity)
            channel.close(promise: nil)
            return
        }
        let refusal = NIOLoopBoundBox<UpgradeRefusal?>(nil, eventLoop: channel.eventLoop)
        let user = NIOLoopBoundBox<String?>(nil, eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: maxFrameBytes,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in shouldUpgrade(channel: channel, head: head, refusal: refusal, user: user) },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    guard let userID = user.value else { throw ChannelError.inappropriateOperationForState }
                    let resume = Result { () throws(ClientFrame.Rejection) in try ConnectResume.parse(uri: head.uri) }
                    try addWebSocketHandlers(channel, userID: userID, resume: resume)
                }
            }
        )
        let http = HTTPRequestHandler(endpoints: endpoints, refusal: refusal)
        let boundHTTP = NIOLoopBound(http, eventLoop: channel.eventLoop)
        let upgradeConfiguration: NIOHTTPServerUpgradeConfiguration = (
            upgraders: [upgrader],
            // After the upgrade the HTTP handler must go: WebSocket frames follow.
            completionHandler: { context in
                context.pipeline.syncOperations.removeHandler(boundHTTP.value, promise: nil)
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withServerUpgrade: upgradeConfiguration)
        try channel.pipeline.syncOperations.addHandler(http)
    }

    /// Decides the upgrade of `/ws`: draining → 503, token → 401, capacity → 503. A refusal
    /// lets the request through to `HTTPRequestHandler`, which answers it.
    private func shouldUpgrade(channel: any Channel, head: HTTPRequestHead, refusal: NIOLoopBoundBox<UpgradeRefusal?>, user: NIOLoopBoundBox<String?>) -> EventLoopFuture<HTTPHeaders?> {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/ws" else { return channel.eventLoop.makeSucceededFuture(nil) }
        if isDraining() {
            metrics.refused(.draining)
            refusal.value = .draining
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let token = TokenAuthenticator.token(from: head)
        let authenticator = authenticator
        let registry = registry
        let metrics = metrics
        let promise = channel.eventLoop.makePromise(of: Result<String, AuthFailure>.self)
        promise.completeWithTask { await authenticator.authenticate(token) }
        return promise.futureResult.map { result -> HTTPHeaders? in
            switch result {
            case .failure(let failure):
                metrics.authFailed(failure)
                refusal.value = .unauthorized(failure)
                return nil
            case .success(let userID):
                guard registry.reserveConnection() else {
                    metrics.refused(.capacity)
                    refusal.value = .overCapacity
                    return nil
                }
                channel.closeFuture.whenComplete { _ in registry.releaseConnection() }
                user.value = userID
                return HTTPHeaders()
            }
        }
    }

    private func addWebSocketHandlers(_ channel: any Channel, userID: String, resume: Result<ConnectResume?, ClientFrame.Rejection>) throws {
        let metrics = metrics
        let handlers: [any ChannelHandler] = [
            NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: maxMessageBytes),
            InboundRateLimitHandler(messagesPerSecond: inboundRate, burst: inboundBurst, closeTimeout: environment.closeHandshakeTimeout) {
                metrics.rateLimitCloses.increment()
            },
            WebSocketSession(userID: userID, eventLoop: channel.eventLoop, environment: environment, resume: resume),
        ]
        try channel.pipeline.syncOperations.addHandlers(handlers)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
