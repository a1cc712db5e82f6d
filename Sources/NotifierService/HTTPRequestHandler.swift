import NIOCore
import NIOHTTP1

/// Why `/ws` was not upgraded, decided by the upgrader before the request reaches
/// `HTTPRequestHandler` (which then answers with it).
enum UpgradeRefusal: Sendable {
    case unauthorized(AuthFailure)
    case overCapacity
    case draining
}

/// What the plain HTTP endpoints read: readiness and the metrics text.
struct OpsEndpoints: Sendable {
    var isReady: @Sendable () -> Bool
    /// Presence is not a readiness condition, but `/readyz` tells whether it is degraded.
    var presenceConnected: @Sendable () -> Bool = { true }
    /// Prometheus text exposition; nil when metrics are not bootstrapped.
    var metricsText: (@Sendable () -> [UInt8])?
}

/// Answers every HTTP request that was not upgraded: `/healthz`, `/readyz`, `/metrics`,
/// and refusals of `/ws` (401 with the reason in the body and in
/// `X-Switchboard-Auth-Error`, 503 over capacity or while draining, 426 without an upgrade).
/// Each response closes the connection: these are probes and refusals, not a web server.
/// A connection that has not completed a request within `requestTimeout` is closed, so
/// idle or trickling TCP connections cannot pile up before the upgrade.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let authErrorHeader = "X-Switchboard-Auth-Error"

    private let endpoints: OpsEndpoints
    private let refusal: NIOLoopBoundBox<UpgradeRefusal?>
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    private var timeout: Scheduled<Void>?

    init(endpoints: OpsEndpoints, refusal: NIOLoopBoundBox<UpgradeRefusal?>, requestTimeout: TimeAmount = .seconds(10)) {
        self.endpoints = endpoints
        self.refusal = refusal
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: requestTimeout) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Removed after an upgrade: the WebSocket has its own heartbeat.
        timeout?.cancel()
        timeout = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        var body: [UInt8]
        switch path {
        case "/healthz":
            status = .ok
            body = Array("ok\n".utf8)
        case "/readyz":
            let ready = endpoints.isReady()
            status = ready ? .ok : .serviceUnavailable
            let presence = endpoints.presenceConnected() ? "presence ok" : "presence degraded (Redis unreachable)"
            body = Array("\(ready ? "ready" : "not ready"); \(presence)\n".utf8)
        case "/metrics":
            if let render = endpoints.metricsText {
                status = .ok
                headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
                body = render()
            } else {
                status = .notFound
                body = Array("metrics are not enabled\n".utf8)
            }
        case "/ws":
            switch refusal.value {
            case .unauthorized(let failure)?:
                status = .unauthorized
                headers.add(name: Self.authErrorHeader, value: failure.rawValue)
                headers.add(name: "WWW-Authenticate", value: "Bearer")
                body = Array("\(failure.rawValue): \(failure.message)\n".utf8)
            case .overCapacity?:
                status = .serviceUnavailable
                body = Array("too many connections on this instance; retry another\n".utf8)
            case .draining?:
                status = .serviceUnavailable
                body = Array("this instance is draining; reconnect elsewhere\n".utf8)
            case nil:
                status = .upgradeRequired
                headers.add(name: "Upgrade", value: "websocket")
                body = Array("/ws needs a WebSocket upgrade request\n".utf8)
            }
            refusal.value = nil
        default:
            status = .notFound
            body = Array("not found\n".utf8)
        }
        if headers["Content-Type"].isEmpty { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
