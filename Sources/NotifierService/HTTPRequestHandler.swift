import NIOCore
import NIOHTTP1
import SwitchboardContracts

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
/// refusals of `/ws` (401 with the reason in the body and in `X-Switchboard-Auth-Error`,
/// 503 over capacity or while draining, 426 without an upgrade), the demo page at `/`, and
/// `POST /demo/send` where the executable installed a `DemoSender` (404 otherwise).
/// Each response closes the connection: these are probes and refusals, not a web server.
/// A connection that has not completed a request within `requestTimeout` is closed, so
/// idle or trickling TCP connections cannot pile up before the upgrade.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let authErrorHeader = ClientProtocol.authErrorHeader

    private let endpoints: OpsEndpoints
    private let refusal: NIOLoopBoundBox<UpgradeRefusal?>
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    /// The request body, kept only for `/demo/send` and only up to `DemoSender.maxBodyBytes`.
    private var body: [UInt8] = []
    private var bodyTooLarge = false
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
            body = []
            bodyTooLarge = false
        case .body(var chunk):
            guard !bodyTooLarge, Self.path(of: head) == "/demo/send" else { return }
            if body.count + chunk.readableBytes > DemoSender.maxBodyBytes {
                bodyTooLarge = true
                body = []
            } else {
                body += chunk.readBytes(length: chunk.readableBytes) ?? []
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if Self.path(of: head) == "/demo/send", let sender = DemoSender.installed {
                sendDemoMessage(head: head, sender: sender, context: context)
            } else {
                respond(to: head, context: context)
            }
        }
    }

    private static func path(of head: HTTPRequestHead?) -> String? {
        guard let uri = head?.uri else { return nil }
        return uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
    }

    /// `POST /demo/send`: the sender works off the event loop; the reply is written back on it.
    private func sendDemoMessage(head: HTTPRequestHead, sender: DemoSender, context: ChannelHandlerContext) {
        if head.method != .POST {
            return write(head: head, status: .methodNotAllowed, headers: ["Allow": "POST"], body: Array("use POST\n".utf8), context: context)
        }
        if bodyTooLarge {
            return write(head: head, status: .payloadTooLarge, headers: [:], body: Array("body over \(DemoSender.maxBodyBytes) bytes\n".utf8), context: context)
        }
        let token = TokenAuthenticator.token(from: head)
        let requestBody = body
        body = []
        let promise = context.eventLoop.makePromise(of: DemoSender.Reply.self)
        promise.completeWithTask { await sender.send(token: token, body: requestBody) }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { reply in
            let (handler, context) = bound.value
            var headers = HTTPHeaders(reply.headers)
            headers.add(name: "Content-Type", value: "application/json")
            handler.write(head: head, status: reply.status, headers: headers, body: Array(reply.body.utf8), context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = Self.path(of: head) ?? head.uri
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        var body: [UInt8]
        switch path {
        case "/", "/index.html":
            status = .ok
            headers = HTTPHeaders(DemoPage.headers)
            body = DemoPage.bytes
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
        write(head: head, status: status, headers: headers, body: body, context: context)
    }

    private func write(head: HTTPRequestHead, status: HTTPResponseStatus, headers: HTTPHeaders, body: [UInt8], context: ChannelHandlerContext) {
        var headers = headers
        if headers["Content-Type"].isEmpty { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
