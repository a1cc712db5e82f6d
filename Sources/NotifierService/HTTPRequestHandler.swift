import NIOCore
import NIOHTTP1
import ServiceSupport
import SwitchboardContracts

/// Why `/ws` was not upgraded, decided by the upgrader before the request reaches
/// `HTTPRequestHandler` (which then answers with it).
enum UpgradeRefusal: Sendable {
    case unauthorized(AuthFailure)
    case overCapacity
    case draining

    var answer: HTTPAnswer {
        switch self {
        case .unauthorized(let failure):
            HTTPAnswer(
                status: .unauthorized, headers: [(AuthFailure.header, failure.rawValue), ("WWW-Authenticate", "Bearer")],
                text: "\(failure.rawValue): \(failure.message)\n"
            )
        case .overCapacity: HTTPAnswer(status: .serviceUnavailable, text: "too many connections on this instance; retry another\n")
        case .draining: HTTPAnswer(status: .serviceUnavailable, text: "this instance is draining; reconnect elsewhere\n")
        }
    }
}

/// Answers every HTTP request that was not upgraded: the operations endpoints
/// (`OperationsEndpoints`), refusals of `/ws` (401 with the reason in the body and in
/// `X-Switchboard-Auth-Error`, 503 over capacity or while draining, 426 without an upgrade),
/// and the executable's extra `NotifierRoutes`. Each response closes the connection: these
/// are probes and refusals, not a web server. A connection that has not completed a request
/// within `requestTimeout` is closed, so idle or trickling TCP connections cannot pile up
/// before the upgrade.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: OperationsEndpoints
    private let routes: (any NotifierRoutes)?
    private let refusal: NIOLoopBoundBox<UpgradeRefusal?>
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    /// The request body, kept only for a route of `routes` and only up to its `maxBodyBytes`.
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    private var timeout: Scheduled<Void>?

    init(endpoints: OperationsEndpoints, routes: (any NotifierRoutes)? = nil, refusal: NIOLoopBoundBox<UpgradeRefusal?>, requestTimeout: TimeAmount = .seconds(10)) {
        self.endpoints = endpoints
        self.routes = routes
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
            guard !bodyTooLarge, let routes, let head, routes.serves(path: Self.path(of: head)) else { return }
            if body.count + chunk.readableBytes > routes.maxBodyBytes {
                bodyTooLarge = true
                body = []
            } else {
                body += chunk.readBytes(length: chunk.readableBytes) ?? []
            }
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private static func path(of head: HTTPRequestHead) -> String {
        head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = Self.path(of: head)
        if let answer = endpoints.response(method: head.method, path: path) {
            return answer.write(version: head.version, context: context)
        }
        if path == "/ws" {
            let answer = refusal.value?.answer
                ?? HTTPAnswer(status: .upgradeRequired, headers: [("Upgrade", "websocket")], text: "/ws needs a WebSocket upgrade request\n")
            refusal.value = nil
            return answer.write(version: head.version, context: context)
        }
        guard let routes, routes.serves(path: path) else {
            return HTTPAnswer(status: .notFound, text: "not found\n").write(version: head.version, context: context)
        }
        if bodyTooLarge {
            return HTTPAnswer(status: .payloadTooLarge, text: "body over \(routes.maxBodyBytes) bytes\n").write(version: head.version, context: context)
        }
        // The route works off the event loop; the answer is written back on it.
        let request = RouteRequest(head: head, path: path, body: body)
        body = []
        let promise = context.eventLoop.makePromise(of: HTTPAnswer.self)
        promise.completeWithTask { await routes.respond(to: request) }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { answer in answer.write(version: head.version, context: bound.value) }
    }
}
