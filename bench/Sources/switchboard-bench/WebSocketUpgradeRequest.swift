import NIOCore
import NIOHTTP1

/// The client half of a bench WebSocket's upgrade: sends `GET /ws` with the user's token once
/// connected, and fails `upgraded` when the server answers without upgrading or the
/// connection closes first (a 101 removes this handler before any response part reaches it).
final class WebSocketUpgradeRequest: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let token: String
    private let port: Int
    private let upgraded: EventLoopPromise<Void>
    private let failure: (String) -> any Error

    init(token: String, port: Int, upgraded: EventLoopPromise<Void>, failure: @escaping (String) -> any Error) {
        self.token = token
        self.port = port
        self.upgraded = upgraded
        self.failure = failure
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "127.0.0.1:\(port)")
        headers.add(name: "Authorization", value: "Bearer \(token)")
        headers.add(name: "Content-Length", value: "0")
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws", headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            upgraded.fail(failure("upgrade refused: HTTP \(head.status.code)"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        upgraded.fail(failure("connection closed before the upgrade"))
        context.fireChannelInactive()
    }
}
