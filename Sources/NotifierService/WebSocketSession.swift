import Logging
import NIOCore
import NIOWebSocket
import SwitchboardContracts

/// One client's WebSocket: protocol state, heartbeat, backpressure, and the target of inbox
/// deliveries (`deliver(_:)`).
///
/// Thread-safety: every mutable property is touched only on `eventLoop` (handler callbacks,
/// and `deliver`/`closeForDrain`, which assert that they run on it). The state a resume
/// shares with the rest (`WebSocketSession+Resume.swift`) is internal for that file alone. Other threads only hold
/// the reference (in `SessionRegistry`) and read the `let`s.
// @unchecked: mutable state confined to `eventLoop`, asserted at every entry from outside it.
final class WebSocketSession: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    enum State { case opening, open, closing, closed }

    let userID: String
    let eventLoop: any EventLoop
    let environment: SessionEnvironment
    var context: ChannelHandlerContext?
    var state = State.opening
    private var lastHeard: NIODeadline
    private var heartbeat: RepeatedTask?
    private var typingBucket: TokenBucket
    private var registered = false
    /// Channels being resumed → live frames held back until their replay is written.
    var resuming: [String: [(seq: UInt64, frame: TextFrame)]] = [:]
    var heldFrames = 0
    /// Resumed channels → the last seq their replay carried. The replay reads the stream, so
    /// the fan-out's live delivery of those same events can reach this socket after it: a live
    /// frame at or below this seq is dropped so the client never gets a seq twice. Cleared by
    /// the first newer live frame (live frames of a channel arrive in stream order).
    var replayedThrough: [String: UInt64] = [:]
    /// The WebSocket encoder's context: encoded frames are written from it (`write(_:context:)`).
    private var encoder: ChannelHandlerContext?
    /// The epoch `replayedThrough`'s seqs belong to: a live frame of another epoch is
    /// numbered anew, so none of it was in a replay.
    var replayedEpoch = ""

    /// Set while writing what the budget does not bound: a frame larger than the budget to an
    /// empty queue (one event, however large, is never a slow consumer by itself), and a
    /// resume's replay (held in memory already, at most `maxReplayEvents` frames). A live
    /// frame that must queue behind more than the budget still closes the socket.
    var writingPastBudget = false
    /// Bytes of frames written by `deliver` and not flushed yet.
    private var unflushedBytes = 0

    /// `?resume=` of the upgrade request, started before any live frame can be delivered.
    private let connectResume: Result<ConnectResume?, ClientFrame.Rejection>

    init(userID: String, eventLoop: any EventLoop, environment: SessionEnvironment, resume: Result<ConnectResume?, ClientFrame.Rejection> = .success(nil)) {
        self.userID = userID
        connectResume = resume
        self.eventLoop = eventLoop
        self.environment = environment
        lastHeard = eventLoop.now
        typingBucket = TokenBucket(rate: environment.typingPerSecond, burst: max(1, environment.typingPerSecond), nowNanos: eventLoop.now.uptimeNanoseconds)
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        encoder = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        guard context.channel.isActive else { return }
        state = .open
        registered = true
        environment.registry.register(self)
        environment.logger.debug("socket open", metadata: ["user": "\(userID)"])
        let hello = ServerFrame.hello(instance: environment.instanceID, user: userID, heartbeatSeconds: Int((environment.heartbeatInterval.nanoseconds + 999_999_999) / 1_000_000_000), epoch: environment.epoch.current)
        context.write(wrapOutboundOut(.text(context.channel.allocator.buffer(bytes: hello))), promise: nil)
        // Registered and resuming on the same event-loop turn: every live frame of these
        // channels from now on is held until its replay is written.
        switch connectResume {
        case .success(let resume):
            for position in resume?.positions ?? [] {
                if let error = startResume(channel: position.channel, after: position.afterSeq, epoch: resume?.epoch) {
                    context.write(wrapOutboundOut(.text(context.channel.allocator.buffer(bytes: error))), promise: nil)
                }
            }
        case .failure(let rejection):
            let error = ServerFrame.error(code: rejection.code, message: rejection.message)
            context.write(wrapOutboundOut(.text(context.channel.allocator.buffer(bytes: error))), promise: nil)
        }
        context.flush()
        let interval = environment.heartbeatInterval
        heartbeat = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.heartbeatTick()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
        encoder = nil
    }

    private func finish() {
        state = .closed
        heartbeat?.cancel()
        heartbeat = nil
        if registered {
            registered = false
            environment.registry.unregister(self)
            environment.logger.debug("socket closed", metadata: ["user": "\(userID)"])
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastHeard = eventLoop.now
        switch frame.opcode {
        case .text:
            guard state == .open else { return }
            handleText(frame.unmaskedData, context: context)
        case .binary:
            initiateClose(code: CloseCode.unsupportedData, reason: "binary frames are not supported")
        case .ping:
            guard state == .open else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            receivedClose(frame, context: context)
        default:
            break
        }
    }

    private func handleText(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        let reply: [UInt8]?
        do {
            switch try ClientFrame.decode(payload.readableBytesView) {
            case .ping:
                reply = ServerFrame.pong
            case .typing(let channel):
                if typingBucket.take(nowNanos: eventLoop.now.uptimeNanoseconds) {
                    environment.publishTyping(channel, userID)
                    environment.metrics.typingPublished.increment()
                }
                reply = nil
            case .resume(let channel, let afterSeq, let epoch):
                reply = startResume(channel: channel, after: afterSeq, epoch: epoch)
            }
        } catch {
            reply = ServerFrame.error(code: error.code, message: error.message)
        }
        if let reply {
            context.writeAndFlush(wrapOutboundOut(.text(context.channel.allocator.buffer(bytes: reply))), promise: nil)
        }
    }

    private func receivedClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        let channel = context.channel
        if state == .open {
            // Echo the peer's code (RFC 6455 §5.5.1), then close the connection.
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? 1000
            state = .closing
            let close = WebSocketFrame.close(code: code, reason: "", allocator: channel.allocator)
            context.writeAndFlush(wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The channel turns unwritable once the bytes written but not yet taken by the
        // kernel pass the high watermark, which the server sets to the outbound budget.
        if !context.channel.isWritable && state == .open && !writingPastBudget {
            environment.metrics.slowConsumerCloses.increment()
            initiateClose(code: CloseCode.slowConsumer, reason: "slow consumer")
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case is NIOWebSocketFrameAggregator.Error:
            environment.metrics.frameTooLargeCloses.increment()
            initiateClose(code: CloseCode.messageTooBig, reason: "message too large")
        case NIOWebSocketError.invalidFrameLength:
            // WebSocketProtocolErrorHandler has already sent close 1009 and closes.
            environment.metrics.frameTooLargeCloses.increment()
            state = .closing
        default:
            environment.logger.debug("closing socket after error", metadata: ["user": "\(userID)", "error": "\(error)"])
            context.close(promise: nil)
        }
    }

    // MARK: Outbound

    /// Writes one frame whose payload is shared by every recipient. Must run on `eventLoop`.
    /// False when the socket is not open (the frame is dropped). `seq` is 0 for frames
    /// that are not events (typing), which are never held back. Without `flush`, the frame
    /// waits for `flushDeliveries` (one flush per socket per inbox message), though never
    /// with more than a quarter of the outbound budget unflushed.
    @inline(__always)
    func deliver(_ frame: TextFrame, channel: String, seq: UInt64, epoch: String = "", flush: Bool = true) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard state == .open, let context else { return false }
        if seq != 0, !replayedThrough.isEmpty, !epoch.isEmpty, epoch != replayedEpoch { replayedThrough.removeAll() }
        if seq != 0, !replayedThrough.isEmpty, let replayed = replayedThrough[channel] {
            if seq <= replayed { return true }  // the replay already sent it
            replayedThrough[channel] = nil
        }
        if seq != 0 && !resuming.isEmpty && resuming[channel] != nil {
            resuming[channel]!.append((seq, frame))
            heldFrames += 1
            if heldFrames > SessionEnvironment.maxHeldFrames {
                environment.metrics.slowConsumerCloses.increment()
                initiateClose(code: CloseCode.slowConsumer, reason: "slow consumer")
            }
            return true
        }
        guard context.channel.isWritable else {
            // Over the budget already (a large frame or a replay is still being sent): this
            // frame would queue behind more than the budget.
            environment.metrics.slowConsumerCloses.increment()
            initiateClose(code: CloseCode.slowConsumer, reason: "slow consumer")
            return true
        }
        let size = frame.wire.readableBytes
        if size >= environment.outboundBufferBytes {
            flushDeliveries()
            writingPastBudget = (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0
            write(frame, context: context)
            (encoder ?? context).flush()
            writingPastBudget = false
            return true
        }
        if unflushedBytes + size > environment.outboundBufferBytes / 4 { flushDeliveries() }
        write(frame, context: context)
        unflushedBytes += size
        if flush { flushDeliveries() }
        return true
    }

    /// Writes an encoded frame's bytes straight below the WebSocket encoder (from its
    /// context, so they reach the socket in order with every frame written through it);
    /// through the encoder as a text frame when the pipeline has none (tests).
    @inline(__always)
    func write(_ frame: TextFrame, context: ChannelHandlerContext) {
        if let encoder {
            encoder.write(NIOAny(frame.wire), promise: nil)
        } else {
            context.write(wrapOutboundOut(.text(frame.payload)), promise: nil)
        }
    }

    /// Flushes frames `deliver` wrote without flushing. Must run on `eventLoop`. From the
    /// encoder's context, like the writes: nothing between it and this handler holds writes
    /// back, and the flush then skips those handlers' contexts.
    @inline(__always)
    func flushDeliveries() {
        guard unflushedBytes > 0 else { return }
        unflushedBytes = 0
        (encoder ?? context)?.flush()
    }

    /// A server frame's header: 2 bytes plus an 8-byte length (servers do not mask).
    private static let frameHeaderBytes = 10

    /// Tells the client to reconnect elsewhere (close 4000). Must run on `eventLoop`.
    func closeForDrain(becauseNATSReconnected: Bool = false) {
        eventLoop.preconditionInEventLoop()
        guard state == .open || state == .opening else { return }
        (becauseNATSReconnected ? environment.metrics.natsReconnectCloses : environment.metrics.drainCloses).increment()
        initiateClose(code: CloseCode.reconnect, reason: "reconnect")
    }

    /// Sends a close frame and closes the connection when the peer answers, or after the
    /// handshake timeout.
    private func initiateClose(code: UInt16, reason: String) {
        guard state != .closing && state != .closed, let context else { return }
        state = .closing
        heartbeat?.cancel()
        heartbeat = nil
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.close(code: code, reason: reason, allocator: channel.allocator)), promise: nil)
        channel.eventLoop.scheduleTask(in: environment.closeHandshakeTimeout) { channel.close(promise: nil) }
    }

    private func heartbeatTick() {
        guard state == .open, let context else { return }
        if eventLoop.now - lastHeard > environment.heartbeatInterval * 2 {
            environment.metrics.heartbeatCloses.increment()
            initiateClose(code: CloseCode.heartbeatTimeout, reason: "heartbeat timeout")
            return
        }
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0))), promise: nil)
    }
}
