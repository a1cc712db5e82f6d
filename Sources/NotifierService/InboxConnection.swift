import Logging
import NATSClient
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SwitchboardContracts

/// The notifier's inbox, `notify.inbox.<instance>`, read on one of its event loops over a NATS
/// connection of its own (the client protocol spoken directly, `ServerFrame` parsing in place).
///
/// Through nats.c an inbox message crossed three threads before a socket saw it: nats.c's
/// reader, the subscription's delivery thread, then each socket's event loop. Here the loop
/// that reads the message decodes it, writes it to its own sockets in the same turn and hands
/// the other loops one task each per read (however many messages the read brought). That
/// loop's thread is the only one that wakes for an event whose sockets are all on it.
///
/// The connection goes to the server the main `NATSConnection` uses, with its credentials
/// (`PlainLogin`: plain TCP, user/password or token); anything else keeps nats.c's
/// subscription. When it drops, deliveries sent meanwhile are lost (core NATS), so once it is
/// back the sockets are asked to reconnect and resume (`onReconnect`), as after a reconnect of
/// nats.c's connection.
final class InboxConnection: Sendable {
    private struct State {
        var channel: (any Channel)?
        var stopped = false
    }

    private let nats: NATSConnection
    private let subject: String
    private let loop: any EventLoop
    private let dispatcher: InboxDispatcher
    private let onReconnect: @Sendable () -> Void
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    /// Pause between two attempts to reconnect.
    static let reconnectWait: TimeAmount = .milliseconds(250)

    private init(nats: NATSConnection, subject: String, loop: any EventLoop, dispatcher: InboxDispatcher, onReconnect: @escaping @Sendable () -> Void, logger: Logger) {
        self.nats = nats
        self.subject = subject
        self.loop = loop
        self.dispatcher = dispatcher
        self.onReconnect = onReconnect
        self.logger = logger
    }

    /// Connects and subscribes; returns once the server confirmed the subscription (its PONG
    /// after the SUB). Throws `NATSError.unsupported` when the connection's settings need
    /// nats.c (TLS, nkeys, credentials files).
    static func open(
        nats: NATSConnection, subject: String, loop: any EventLoop, dispatcher: InboxDispatcher,
        onReconnect: @escaping @Sendable () -> Void, logger: Logger
    ) async throws -> InboxConnection {
        let inbox = InboxConnection(nats: nats, subject: subject, loop: loop, dispatcher: dispatcher, onReconnect: onReconnect, logger: logger)
        let channel = try await inbox.connect().get()
        inbox.adopt(channel)
        return inbox
    }

    /// True while subscribed (for readiness).
    var isConnected: Bool { state.withLockedValue { $0.channel?.isActive ?? false } }

    /// Closes the connection for good (graceful shutdown). Idempotent.
    func close() async {
        let channel = state.withLockedValue { state -> (any Channel)? in
            state.stopped = true
            defer { state.channel = nil }
            return state.channel
        }
        try? await channel?.close()
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let login: PlainLogin
        do {
            login = try PlainLogin(connection: nats, name: "\(nats.options.name)-inbox", purpose: "notifier inbox")
        } catch {
            return loop.makeFailedFuture(error)
        }
        let timeout = TimeAmount(nats.options.connectTimeout)
        let subscribe = Array("SUB \(subject) 1\r\nPING\r\n".utf8)
        let ready = loop.makePromise(of: Void.self)
        let pingInterval = TimeAmount(nats.options.pingInterval)
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [dispatcher, logger] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(InboxProtocolHandler(
                        login: login, subscribe: subscribe, ready: ready, pingInterval: pingInterval, dispatcher: dispatcher, logger: logger
                    ))
                }
            }
            .connect(host: login.host, port: Int(login.port))
            .flatMap { channel in
                let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                    ready.fail(NATSError.timeout(operation: "notifier inbox at \(login.redactedURL): subscription confirmed within \(timeout)"))
                }
                return ready.futureResult
                    .always { _ in deadline.cancel() }
                    .map { channel }
                    .flatMapErrorThrowing { error in
                        channel.close(promise: nil)
                        throw error
                    }
            }
    }

    /// Holds `channel` and reconnects when it closes, unless stopped.
    private func adopt(_ channel: any Channel) {
        let keep = state.withLockedValue { state -> Bool in
            guard !state.stopped else { return false }
            state.channel = channel
            return true
        }
        guard keep else { return channel.close(promise: nil) }
        channel.closeFuture.whenComplete { [self] _ in
            let stopped = state.withLockedValue { state -> Bool in
                if state.channel === channel { state.channel = nil }
                return state.stopped
            }
            guard !stopped else { return }
            logger.warning("notifier inbox connection lost: no deliveries until it is back", metadata: ["subject": "\(subject)"])
            reconnect(attempt: 1)
        }
    }

    private func reconnect(attempt: Int) {
        loop.scheduleTask(in: Self.reconnectWait) { [self] in
            guard !state.withLockedValue({ $0.stopped }) else { return }
            connect().whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    adopt(channel)
                    logger.notice("notifier inbox connection back", metadata: ["subject": "\(subject)", "attempts": "\(attempt)"])
                    onReconnect()  // logs what it asks of the sockets
                case .failure(let error):
                    // Every 20th failure is logged (about every 5 s): the server may be gone for long.
                    if attempt % 20 == 1 {
                        logger.warning("notifier inbox reconnect failed; trying again", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                    }
                    reconnect(attempt: attempt + 1)
                }
            }
        }
    }
}

/// One inbox connection's protocol, on its channel's event loop: the handshake (INFO, then
/// CONNECT, SUB and PING, confirmed by the PONG), PING/PONG both ways, and every message
/// handed to the dispatcher in place. The frames of one read are delivered together.
final class InboxProtocolHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase { case awaitingInfo, awaitingPong, subscribed, failed }

    /// A message larger than this is no inbox message (the fan-out's are at most 256 KiB;
    /// nats-server's largest payload is 64 MiB): the connection is closed.
    static let maxBufferedBytes = 72 << 20

    private let login: PlainLogin
    private let subscribe: [UInt8]
    private let ready: EventLoopPromise<Void>
    private let pingInterval: TimeAmount
    private let dispatcher: InboxDispatcher
    private let logger: Logger
    private var phase = Phase.awaitingInfo
    /// Bytes received and not yet parsed (a frame cut by the read).
    private var pending: ByteBuffer?
    private var pingsUnanswered = 0
    private var pinger: RepeatedTask?

    init(login: PlainLogin, subscribe: [UInt8], ready: EventLoopPromise<Void>, pingInterval: TimeAmount, dispatcher: InboxDispatcher, logger: Logger) {
        self.login = login
        self.subscribe = subscribe
        self.ready = ready
        self.pingInterval = pingInterval
        self.dispatcher = dispatcher
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        // Two PINGs without a PONG: the server (or the path to it) is gone.
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: pingInterval, delay: pingInterval) { _ in
            bound.value.handler.ping(bound.value.context)
        }
        context.fireChannelActive()
    }

    private func ping(_ context: ChannelHandlerContext) {
        if pingsUnanswered >= 2 {
            logger.warning("notifier inbox connection stale: two PINGs unanswered", metadata: ["server": "\(login.redactedURL)"])
            context.close(promise: nil)
            return
        }
        pingsUnanswered += 1
        send(Self.ping, context)
        context.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        ready.fail(NATSError.connectionClosed(operation: "notifier inbox at \(login.redactedURL)"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ready.fail(error)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var buffered = pending {
            pending = nil
            buffered.writeBuffer(&incoming)
            incoming = buffered
        }
        var frames: [SessionRegistry.SlotFrame] = []
        var wrote = false
        do {
            let consumed = try incoming.withUnsafeReadableBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                var index = 0
                while let (frame, end) = try NATSClient.ServerFrame.next(in: bytes, from: index) {
                    index = end
                    wrote = try handle(frame, bytes, context, into: &frames) || wrote
                }
                return index
            }
            incoming.moveReaderIndex(forwardBy: consumed)
        } catch {
            fail(error, context)
            return
        }
        if !frames.isEmpty { dispatcher.deliver(frames) }
        if wrote { context.flush() }
        if incoming.readableBytes > 0 {
            guard incoming.readableBytes <= Self.maxBufferedBytes else {
                return fail(NATSError.malformedResponse(operation: "notifier inbox", reason: "a frame over \(Self.maxBufferedBytes) bytes"), context)
            }
            incoming.discardReadBytes()
            pending = incoming
        }
    }

    /// True when it wrote something to the server.
    private func handle(_ frame: NATSClient.ServerFrame, _ bytes: UnsafeBufferPointer<UInt8>, _ context: ChannelHandlerContext, into frames: inout [SessionRegistry.SlotFrame]) throws -> Bool {
        switch frame {
        case .message(let message):
            let headers = message.headers.map { UnsafeBufferPointer(rebasing: bytes[$0]) }
            dispatcher.collect(kind: headers.flatMap { HeaderBlock.value(InboxKind.header, in: $0) }, payload: Array(bytes[message.payload]), into: &frames)
        case .ping:
            send(Self.pong, context)
            return true
        case .pong:
            if phase == .awaitingPong {
                phase = .subscribed
                ready.succeed()
            }
            pingsUnanswered = 0
        case .info(let range):
            guard phase == .awaitingInfo else { return false }  // later INFOs announce cluster changes
            try PlainLogin.checkInfo(bytes[range], purpose: "notifier inbox")
            phase = .awaitingPong
            send(login.connectLine + subscribe, context)
            return true
        case .error(let range):
            let text = String(decoding: bytes[range], as: UTF8.self)
            // Before the PONG: a refused login or subscription. After it the server closes
            // the connection itself when the error is fatal (a slow consumer, say).
            if phase != .subscribed { throw NATSError.failed(operation: "notifier inbox at \(login.redactedURL)", status: "server error \(text)") }
            logger.warning("notifier inbox: the server reported an error", metadata: ["error": "\(text)"])
        case .ok:
            break
        }
        return false
    }

    private func fail(_ error: any Error, _ context: ChannelHandlerContext) {
        phase = .failed
        pending = nil
        ready.fail(error)  // no effect once it succeeded
        logger.warning("notifier inbox connection failed", metadata: ["server": "\(login.redactedURL)", "error": "\(error)"])
        context.close(promise: nil)
    }

    private func send(_ bytes: [UInt8], _ context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private static let ping = Array("PING\r\n".utf8)
    private static let pong = Array("PONG\r\n".utf8)
}
