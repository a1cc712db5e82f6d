import Logging
import NATSClient
import NIOCore
import NIOPosix
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardProto
import Synchronization

/// One notifier instance as a swift-service-lifecycle `Service`. `run()` connects to NATS
/// and subscribes the inbox, then runs its parts in an inner `ServiceGroup` — the presence
/// registrar, the inbox subscription, the listener — until graceful shutdown (SIGTERM
/// through the executable's group). The group shuts them down in reverse order: the
/// listener drains its sockets first, then the inbox is unsubscribed, then presence is
/// deregistered; NATS is drained last. Blocking NATS and Redis calls run on
/// `NIOThreadPool.singleton`, the process's one blocking executor.
public struct NotifierService: Service {
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

    /// - Parameter metricsText: renders the process's metrics for `/metrics` (Prometheus
    ///   text); nil answers 404 there.
    public init(configuration: NotifierConfiguration, logger: Logger = Logger(label: "switchboard.notifier"), metricsText: (@Sendable () -> [UInt8])? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.metricsText = metricsText
    }

    /// Sizes `NIOThreadPool.singleton` for `configuration` (see `blockingThreads`). Call it
    /// first thing in `main`: the size cannot change once the pool has been used.
    public static func sizeBlockingPool(for configuration: NotifierConfiguration) {
        NIOSingletons.blockingPoolThreadCountSuggestion = max(System.coreCount, configuration.blockingThreads)
    }

    public func run() async throws {
        let config = configuration
        if let problem = config.problem() { throw Error.invalidConfiguration(problem) }
        let logger = logger
        let metrics = NotifierMetrics()
        let registry = SessionRegistry(maxConnections: config.maxConnections, slotReuseDelay: config.slotReuseDelay, metrics: metrics)
        // Until the inbox reads over a connection of its own, nats.c's connection carries it.
        let inboxOnNATSConnection = InboxOnNATSConnection()
        let nats: NATSConnection
        do {
            nats = try await NIOThreadPool.singleton.runIfActive {
                try NATSConnection(options: .init(
                    url: config.natsURL, name: "notifier-\(config.instanceID)",
                    onConnectionEvent: { event in
                        Self.connectionChanged(
                            event, carriesInbox: inboxOnNATSConnection.value.load(ordering: .relaxed), registry: registry, metrics: metrics,
                            window: config.drainWindow, instanceID: config.instanceID, logger: logger
                        )
                    },
                    tls: .files(ca: config.natsTLSCAFile, cert: config.natsTLSCertFile, key: config.natsTLSKeyFile),
                    authentication: config.natsAuthentication,
                    onAsyncError: { [logger, metrics] error in
                        metrics.natsAsyncErrors.increment()
                        logger.error("NATS server reported an error", metadata: ["error": "\(error)"])
                    }
                ))
            }
        } catch {
            throw Error.nats(url: NATSConnection.redacted(config.natsURL), underlying: "\(error)")
        }
        // Unknown until the stream exists (the fan-out creates it); then the first delivery says.
        let epoch = CurrentEpoch((try? await NIOThreadPool.singleton.runIfActive {
            StreamEpoch.of(createdNs: try nats.jetStream().streamState(StreamNames.events).createdNs)
        }) ?? "")
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: config.eventLoopThreads)
        do {
            let inbox: InboxSubscription
            do {
                inbox = try await InboxSubscription.subscribe(
                    nats, instanceID: config.instanceID, dispatcher: InboxDispatcher(registry: registry, metrics: metrics, epoch: epoch, logger: logger),
                    loop: eventLoops.next(),
                    onReconnect: {
                        Self.askSocketsToResume(registry: registry, window: config.drainWindow, instanceID: config.instanceID, what: "notifier inbox", logger: logger)
                    },
                    logger: logger
                )
                inboxOnNATSConnection.value.store(inbox.readsThroughNATSC, ordering: .relaxed)
            } catch {
                throw Error.nats(url: NATSConnection.redacted(config.natsURL), underlying: "\(error)")
            }
            let presence = PresenceRegistrar(
                instanceID: config.instanceID, redisURL: config.redisURL, heartbeat: config.presenceHeartbeat,
                queueLimit: config.presenceQueueLimit, metrics: metrics, logger: logger
            ) { registry.registrations() }
            registry.setPresenceSink(.init(
                online: { user, slot in presence.enqueue(.online(user: user, slot: slot)) },
                offline: { user, slot in presence.enqueue(.offline(user: user, slot: slot)) }
            ))
            let environment = sessionEnvironment(nats: nats, registry: registry, metrics: metrics, epoch: epoch)
            let authenticator = await TokenAuthenticator(secret: config.jwtSecret, leeway: config.jwtLeeway)
            let server = NotifierServer(
                configuration: config, registry: registry,
                pipeline: { endpoints in
                    WebSocketPipeline(
                        authenticator: authenticator, registry: registry, metrics: metrics, environment: environment,
                        endpoints: endpoints, routes: config.routes, maxFrameBytes: config.maxFrameBytes,
                        inboundRate: config.maxInboundMessagesPerSecond, inboundBurst: config.inboundBurst
                    )
                },
                eventLoops: eventLoops, natsConnected: { nats.isConnected && inbox.isConnected }, presenceConnected: { presence.isConnected },
                metricsText: metricsText, logger: logger
            )
            let group = ServiceGroup(configuration: .init(services: [presence, inbox, server], logger: logger))
            try await group.run()
        } catch {
            await Self.close(nats: nats, eventLoops: eventLoops)
            throw error
        }
        await Self.close(nats: nats, eventLoops: eventLoops)
        logger.info("notifier drained", metadata: ["instance": "\(config.instanceID)"])
    }

    private static func close(nats: NATSConnection, eventLoops: MultiThreadedEventLoopGroup) async {
        _ = try? await NIOThreadPool.singleton.runIfActive { nats.drain(timeout: .seconds(2)) }
        try? await eventLoops.shutdownGracefully()
    }

    private func sessionEnvironment(nats: NATSConnection, registry: SessionRegistry, metrics: NotifierMetrics, epoch: CurrentEpoch) -> SessionEnvironment {
        let config = configuration
        let logger = logger
        // Resume needs JetStream; without it clients still get live events.
        let replayer: EventReplayer?
        do {
            replayer = EventReplayer(
                jetStream: try nats.jetStream(), partitionCount: config.partitionCount, epoch: epoch, logger: logger, maxEvents: config.maxReplayEvents,
                maxConcurrent: config.maxConcurrentReplays
            )
        } catch {
            logger.warning("resume disabled: no JetStream context", metadata: ["error": "\(error)"])
            replayer = nil
        }
        return SessionEnvironment(
            instanceID: config.instanceID, registry: registry, metrics: metrics,
            heartbeatInterval: TimeAmount(config.heartbeatInterval), closeHandshakeTimeout: TimeAmount(config.closeHandshakeTimeout),
            typingPerSecond: config.typingPerSecond,
            publishTyping: { channel, user in
                // A core NATS publish only buffers: it does not block the event loop.
                let subject = Subjects.typing(channel: channel, partitionCount: config.partitionCount)
                do {
                    try nats.publish(subject, payload: Typing(channelID: channel, userID: user).encoded())
                } catch {
                    logger.debug("typing publish failed", metadata: ["subject": "\(subject)", "error": "\(error)"])
                }
            },
            replayer: replayer, logger: logger, outboundBufferBytes: config.outboundBufferBytes, epoch: epoch
        )
    }

    /// Deliveries are core NATS: whatever the fan-out sent while the inbox's connection was
    /// down is gone, and a client cannot see the hole (`seq` is stream-wide). So after a
    /// reconnect of the connection that `carriesInbox` every socket open at that moment is
    /// asked to reconnect (4000, spread over the drain window) and resume from its last seq,
    /// which replays exactly the missed events.
    private static func connectionChanged(
        _ event: ConnectionEvent, carriesInbox: Bool, registry: SessionRegistry, metrics: NotifierMetrics, window: Duration, instanceID: String, logger: Logger
    ) {
        switch event {
        case .disconnected:
            guard !registry.isDraining else { return }  // the drain closes the connection itself
            metrics.natsDisconnects.increment()
            logger.warning(carriesInbox ? "NATS disconnected: no deliveries until it reconnects" : "NATS disconnected (the inbox has a connection of its own)",
                           metadata: ["instance": "\(instanceID)"])
        case .reconnected:
            guard carriesInbox else { return logger.notice("NATS reconnected (the inbox has a connection of its own)", metadata: ["instance": "\(instanceID)"]) }
            askSocketsToResume(registry: registry, window: window, instanceID: instanceID, what: "NATS", logger: logger)
        }
    }

    /// `what` reconnected after deliveries may have been lost: every open socket is closed
    /// with 4000, spread over `window`, and its client resumes.
    private static func askSocketsToResume(registry: SessionRegistry, window: Duration, instanceID: String, what: String, logger: Logger) {
        guard !registry.isDraining else { return }
        let sockets = registry.closeAll(spreadOver: TimeAmount(window), becauseNATSReconnected: true)
        logger.warning("\(what) reconnected: asking sockets to reconnect and resume what they may have missed", metadata: [
            "instance": "\(instanceID)", "sockets": "\(sockets)", "window_s": "\(window)",
        ])
    }
}

/// Whether nats.c's connection carries the inbox: only then does its reconnect mean lost
/// deliveries.
private final class InboxOnNATSConnection: Sendable {
    let value = Atomic(true)
}
