import NIOCore
import NIOWebSocket
import SwitchboardContracts

/// Bounds the messages one client may send: a token bucket per socket. A client over it is
/// sent close 1008 and disconnected; nothing it sends is queued. Defends the event loop
/// (and the NATS typing subjects) against a flooding client.
final class InboundRateLimitHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var bucket: TokenBucket
    private var tripped = false
    private let onTrip: () -> Void
    /// How long the peer has to answer the close frame before the connection is closed.
    private let closeTimeout: TimeAmount

    /// - Parameters:
    ///   - messagesPerSecond: sustained inbound messages per second (every frame counts,
    ///     control frames included, so a ping flood is bounded too).
    ///   - burst: messages accepted at once before the rate applies.
    init(messagesPerSecond: Double, burst: Double, closeTimeout: TimeAmount = .seconds(2), onTrip: @escaping () -> Void = {}) {
        // Starts full: any first reading refills it to `burst`.
        bucket = TokenBucket(rate: messagesPerSecond, burst: burst, nowNanos: 0)
        self.closeTimeout = closeTimeout
        self.onTrip = onTrip
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if tripped { return }
        let frame = unwrapInboundIn(data)
        // The peer's own close frame always passes: it ends the session anyway.
        if frame.opcode == .connectionClose || bucket.take(nowNanos: context.eventLoop.now.uptimeNanoseconds) {
            context.fireChannelRead(data)
            return
        }
        tripped = true
        onTrip()
        let close = WebSocketFrame.close(code: CloseCode.policyViolation, reason: "rate limit", allocator: context.channel.allocator)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: closeTimeout) { channel.close(promise: nil) }
    }
}
