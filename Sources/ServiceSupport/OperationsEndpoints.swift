import NIOCore
import NIOHTTP1

/// What `/healthz`, `/readyz` and `/metrics` answer. Every service's HTTP listener asks it
/// first, so these endpoints are written once for all of them.
public struct OperationsEndpoints: Sendable {
    public var liveness: @Sendable () -> Bool
    public var readiness: @Sendable () -> Bool
    /// Appended to `/readyz`'s body: the state of a dependency that is not a readiness
    /// condition (the notifier's Redis presence), so an operator sees it degraded.
    public var readinessNote: (@Sendable () -> String)?
    /// Prometheus text exposition; nil answers 404 on `/metrics`.
    public var metrics: (@Sendable () -> [UInt8])?

    public init(
        liveness: @escaping @Sendable () -> Bool = { true }, readiness: @escaping @Sendable () -> Bool,
        readinessNote: (@Sendable () -> String)? = nil, metrics: (@Sendable () -> [UInt8])?
    ) {
        self.liveness = liveness
        self.readiness = readiness
        self.readinessNote = readinessNote
        self.metrics = metrics
    }

    /// The answer to `method path` (a path without its query), or nil when `path` is not
    /// one of these endpoints.
    public func response(method: HTTPMethod, path: String) -> HTTPAnswer? {
        guard ["/healthz", "/readyz", "/metrics"].contains(path) else { return nil }
        guard method == .GET || method == .HEAD else {
            return HTTPAnswer(status: .methodNotAllowed, headers: [("Allow", "GET")], text: "only GET\n")
        }
        switch path {
        case "/healthz":
            let live = liveness()
            return HTTPAnswer(status: live ? .ok : .serviceUnavailable, text: live ? "ok\n" : "not live\n")
        case "/readyz":
            let ready = readiness()
            let note = readinessNote.map { "; \($0())" } ?? ""
            return HTTPAnswer(status: ready ? .ok : .serviceUnavailable, text: "\(ready ? "ready" : "not ready")\(note)\n")
        default:
            guard let metrics else { return HTTPAnswer(status: .notFound, text: "metrics are not enabled\n") }
            return HTTPAnswer(status: .ok, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: metrics())
        }
    }
}

/// One complete HTTP response. Operations listeners answer probes and refusals, not web
/// traffic, so every answer closes its connection.
public struct HTTPAnswer: Sendable {
    public var status: HTTPResponseStatus
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: HTTPResponseStatus, headers: [(String, String)] = [], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A `text/plain` answer unless `headers` name another type.
    public init(status: HTTPResponseStatus, headers: [(String, String)] = [], text: String) {
        self.init(status: status, headers: headers, body: Array(text.utf8))
    }

    /// Writes the answer on `context` (an HTTP server pipeline) and closes the connection.
    public func write(version: HTTPVersion, context: ChannelHandlerContext) {
        var headers = HTTPHeaders(self.headers)
        if headers["Content-Type"].isEmpty { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
