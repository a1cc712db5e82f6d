import NIOCore
import NIOHTTP1
import NIOWebSocket
import ServiceSupport

/// Builds the per-connection pipeline: HTTP/1.1 with the WebSocket upgrader in front of
/// `HTTPRequestHandler`; after an upgrade, the WebSocket handlers.
struct WebSocketPipeline: Sendable {
    let authenticator: TokenAuthenticator
    let registry: SessionRegistry
    let metrics: NotifierMetrics
    let environment: SessionEnvironment
    let endpoints: OperationsEndpoints
    let routes: (any NotifierRoutes)?
    /// Largest client message, one frame or all its fragments together.
    let maxFrameBytes: Int
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
        let http = HTTPRequestHandler(endpoints: endpoints, routes: routes, refusal: refusal)
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
        if registry.isDraining {
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
            NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: maxFrameBytes),
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
