import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// A well-behaved WebSocket client built on SwiftNIO's own client upgrader: a second,
/// independent implementation of the protocol next to `WebSocketTestClient`. It records
/// every text frame and the close code, and answers pings (NIO does not by itself).
final class NIOWebSocketTestClient: Sendable {
    enum Failure: Error { case notUpgraded(HTTPResponseStatus?) }

    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let received: NIOLockedValueBox<[String]>
    private let closeCode: NIOLockedValueBox<UInt16?>

    private init(group: MultiThreadedEventLoopGroup, channel: any Channel, received: NIOLockedValueBox<[String]>, closeCode: NIOLockedValueBox<UInt16?>) {
        self.group = group
        self.channel = channel
        self.received = received
        self.closeCode = closeCode
    }

    /// Connects to `ws://127.0.0.1:<port>/ws` with `Authorization: Bearer <token>` and waits
    /// for the upgrade.
    static func connect(port: Int, token: String) async throws -> NIOWebSocketTestClient {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let received = NIOLockedValueBox<[String]>([])
        let closeCode = NIOLockedValueBox<UInt16?>(nil)
        let upgraded = group.next().makePromise(of: Void.self)
        let status = NIOLockedValueBox<HTTPResponseStatus?>(nil)
        do {
            let channel = try await ClientBootstrap(group: group).channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 20) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(FrameRecorder(received: received, closeCode: closeCode))
                            upgraded.succeed()
                        }
                    }
                    let request = UpgradeRequester(token: token, port: port, status: status, upgraded: upgraded)
                    let boundRequest = NIOLoopBound(request, eventLoop: channel.eventLoop)
                    // The server's hello may share a TCP segment with the 101: keep those bytes.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            // HTTP is over: the requester must not see WebSocket bytes.
                            context.pipeline.syncOperations.removeHandler(boundRequest.value, promise: nil)
                        })
                    )
                    try channel.pipeline.syncOperations.addHandler(request)
                }
            }.connect(host: "127.0.0.1", port: port).get()
            let timeout = group.next().scheduleTask(in: .seconds(5)) { upgraded.fail(Failure.notUpgraded(nil)) }
            defer { timeout.cancel() }
            do {
                try await upgraded.futureResult.get()
            } catch {
                try? await channel.close()
                throw Failure.notUpgraded(status.withLockedValue { $0 })
            }
            return NIOWebSocketTestClient(group: group, channel: channel, received: received, closeCode: closeCode)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Every text frame received so far.
    var texts: [String] { received.withLockedValue { $0 } }
    /// The code of the server's close frame, once one arrived.
    var serverCloseCode: UInt16? { closeCode.withLockedValue { $0 } }

    func send(text: String) async throws {
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
        try await channel.writeAndFlush(frame)
    }

    func close() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

/// Sends the upgrade request once connected; records the status of a refused upgrade.
private final class UpgradeRequester: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let token: String
    private let port: Int
    private let status: NIOLockedValueBox<HTTPResponseStatus?>
    private let upgraded: EventLoopPromise<Void>

    init(token: String, port: Int, status: NIOLockedValueBox<HTTPResponseStatus?>, upgraded: EventLoopPromise<Void>) {
        self.token = token
        self.port = port
        self.status = status
        self.upgraded = upgraded
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
        // Only reached when the server did not upgrade.
        if case .head(let head) = unwrapInboundIn(data) {
            status.withLockedValue { $0 = head.status }
            upgraded.fail(NIOWebSocketTestClient.Failure.notUpgraded(head.status))
        }
    }
}

/// Records text frames and the close code; answers pings.
private final class FrameRecorder: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let received: NIOLockedValueBox<[String]>
    private let closeCode: NIOLockedValueBox<UInt16?>

    init(received: NIOLockedValueBox<[String]>, closeCode: NIOLockedValueBox<UInt16?>) {
        self.received = received
        self.closeCode = closeCode
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            let text = String(buffer: frame.unmaskedData)
            received.withLockedValue { $0.append(text) }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            closeCode.withLockedValue { $0 = code }
            let reply = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: context.channel.allocator.buffer(integer: code ?? 1000))
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }
}
