import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// A well-behaved WebSocket client built on SwiftNIO's own client upgrader: a second,
/// independent implementation of the protocol next to `WebSocketTestClient`. It records
/// every text frame and the close code, and answers pings (NIO does not by itself).
public final class NIOWebSocketTestClient: Sendable {
    private let fleet: WebSocketClientFleet<FrameRecorder>
    private let recorder: FrameRecorder

    private init(fleet: WebSocketClientFleet<FrameRecorder>, recorder: FrameRecorder) {
        self.fleet = fleet
        self.recorder = recorder
    }

    /// Connects to `ws://127.0.0.1:<port>/ws` with `Authorization: Bearer <token>` and waits
    /// for the upgrade; a refused one throws `WebSocketClientError.refused(status)`.
    public static func connect(port: Int, token: String) async throws -> NIOWebSocketTestClient {
        let fleet = WebSocketClientFleet<FrameRecorder>(threads: 1)
        do {
            let recorder = try await fleet.connect(.init(port: port, token: token), timeout: .seconds(5), readyOnUpgrade: true) { _, _ in
                FrameRecorder()
            }.get()
            return NIOWebSocketTestClient(fleet: fleet, recorder: recorder)
        } catch {
            try? await fleet.group.shutdownGracefully()
            throw error
        }
    }

    /// Every text frame received so far.
    public var texts: [String] { recorder.received.withLockedValue { $0 } }
    /// The code of the server's close frame, once one arrived.
    public var serverCloseCode: UInt16? { recorder.closeCode.withLockedValue { $0 } }

    public func send(text: String) async throws {
        guard let channel = recorder.channel.withLockedValue({ $0 }) else { throw WebSocketClientError.notReady("not connected") }
        try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text)))
    }

    public func close() async {
        fleet.closeAll(timeout: .seconds(5))
        try? await fleet.group.shutdownGracefully()
    }
}

/// Records text frames and the close code; answers pings and the server's close.
final class FrameRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let received = NIOLockedValueBox<[String]>([])
    let closeCode = NIOLockedValueBox<UInt16?>(nil)
    let channel = NIOLockedValueBox<(any Channel)?>(nil)

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        self.channel.withLockedValue { $0 = channel }
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
