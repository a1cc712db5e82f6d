import NIOCore
import NIOHTTP1

/// Why a client WebSocket of the harness did not open.
public enum WebSocketClientError: Error, CustomStringConvertible {
    /// The server answered the upgrade with another status.
    case refused(HTTPResponseStatus)
    /// The connection ended, or nothing came in time, before the socket was ready.
    case notReady(String)

    public var description: String {
        switch self {
        case .refused(let status): "upgrade refused: HTTP \(status.code)"
        case .notReady(let what): what
        }
    }
}

/// The client half of a WebSocket upgrade: sends `GET /ws` with `Authorization: Bearer <token>`
/// once connected, and fails `upgraded` when the server answers without upgrading or the
/// connection closes first (a 101 removes this handler before any response part reaches it).
public final class WebSocketUpgradeRequest: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPClientResponsePart
    public typealias OutboundOut = HTTPClientRequestPart

    private let token: String
    private let port: Int
    private let upgraded: EventLoopPromise<Void>

    public init(token: String, port: Int, upgraded: EventLoopPromise<Void>) {
        self.token = token
        self.port = port
        self.upgraded = upgraded
    }

    public func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "127.0.0.1:\(port)")
        headers.add(name: "Authorization", value: "Bearer \(token)")
        headers.add(name: "Content-Length", value: "0")
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws", headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            upgraded.fail(WebSocketClientError.refused(head.status))
            context.close(promise: nil)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        upgraded.fail(WebSocketClientError.notReady("connection closed before the upgrade"))
        context.fireChannelInactive()
    }
}
