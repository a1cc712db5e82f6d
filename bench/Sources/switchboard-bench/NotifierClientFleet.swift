import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// The WebSocket clients of `switchboard-bench notifier`: many cheap SwiftNIO channels on one
/// small event-loop group, so that the client side costs little next to the notifier.
///
/// Each socket is bound to a loopback source address of its own block (127.0.0.2,
/// 127.0.0.3, …, `socketsPerAddress` sockets each): with one source address, the tens of
/// thousands of sockets would run out of ephemeral ports (32768–60999 here).
final class NotifierClientFleet: Sendable {
    let group: MultiThreadedEventLoopGroup
    let port: Int
    let socketsPerAddress: Int
    /// The first source address is 127.0.0.(2 + firstAddressBlock).
    let firstAddressBlock: Int
    /// Event frames received by every socket together (first/last receive instants).
    let sink = PipelineSink()
    private let sockets = Mutex<[(channel: any Channel, handler: NotifierClientSocket)]>([])

    /// Sockets per source address at most, so that every address stays far from the
    /// ephemeral port range's size.
    static let defaultSocketsPerAddress = 5_000

    /// `firstAddressBlock` lets a second fleet use other source addresses than the first:
    /// the first fleet's closed sockets sit in TIME_WAIT on theirs, and binding to port 0 on
    /// a crowded address makes every new connect slower.
    init(threads: Int, port: Int, socketsPerAddress: Int = defaultSocketsPerAddress, firstAddressBlock: Int = 0) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.port = port
        self.socketsPerAddress = socketsPerAddress
        self.firstAddressBlock = firstAddressBlock
    }

    var count: Int { sockets.withLock { $0.count } }

    /// What one `open` call achieved.
    struct OpenResult {
        var opened: Int
        var failed: Int
        var firstError: String?
        var seconds: Double
    }

    /// Opens one socket per `(user, token)`, at most `concurrency` handshakes in flight, and
    /// returns once every socket has received its hello frame or failed (each within
    /// `timeout`). A socket that fails is closed and not kept.
    func open(_ users: [(user: String, token: String)], concurrency: Int, timeout: TimeAmount = .seconds(30)) -> OpenResult {
        let started = ContinuousClock.now
        let gate = DispatchSemaphore(value: concurrency)
        let pending = DispatchGroup()
        let tally = OpenTally()
        var index = count
        for (_, token) in users {
            gate.wait()
            pending.enter()
            let source: SocketAddress
            do {
                source = try Self.sourceAddress(socket: index, perAddress: socketsPerAddress, firstBlock: firstAddressBlock)
            } catch {
                tally.failed(error)
                gate.signal()
                pending.leave()
                continue
            }
            index += 1
            connect(token: token, source: source, timeout: timeout).whenComplete { result in
                switch result {
                case .success(let opened):
                    self.sockets.withLock { $0.append(opened) }
                case .failure(let error):
                    tally.failed(error)
                }
                gate.signal()
                pending.leave()
            }
        }
        pending.wait()
        let failures = tally.failures.load(ordering: .relaxed)
        return OpenResult(opened: users.count - failures, failed: failures, firstError: tally.firstError.withLock { $0 },
                          seconds: (ContinuousClock.now - started).seconds)
    }

    /// Failures of one `open` call, shared with the connect callbacks.
    private final class OpenTally: Sendable {
        let failures = Atomic<Int>(0)
        let firstError = Mutex<String?>(nil)

        func failed(_ error: any Error) {
            failures.add(1, ordering: .relaxed)
            firstError.withLock { $0 = $0 ?? "\(error)" }
        }
    }

    /// 127.0.0.(2 + firstBlock) for the first `perAddress` sockets, the next address for the
    /// next `perAddress`, …
    static func sourceAddress(socket index: Int, perAddress: Int, firstBlock: Int) throws -> SocketAddress {
        let octet = 2 + firstBlock + index / perAddress
        guard octet <= 254 else { throw PipelineError.setup("out of source addresses at socket \(index + 1) (\(perAddress) per address from 127.0.0.\(2 + firstBlock))") }
        return try SocketAddress(ipAddress: "127.0.0.\(octet)", port: 0)
    }

    /// One socket: TCP connect from `source`, HTTP upgrade with `Authorization: Bearer`,
    /// then the hello frame. Fails with the HTTP status of a refused upgrade.
    private func connect(token: String, source: SocketAddress, timeout: TimeAmount) -> EventLoopFuture<(channel: any Channel, handler: NotifierClientSocket)> {
        let loop = group.next()
        let hello = loop.makePromise(of: Void.self)
        let handler = NotifierClientSocket(sink: sink, hello: hello)
        let port = port
        let connected = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(to: source)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 16) { channel, _ in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                    }
                    let request = WebSocketUpgradeRequest(token: token, port: port, upgraded: hello, failure: NotifierBenchError.socket)
                    let boundRequest = NIOLoopBound(request, eventLoop: channel.eventLoop)
                    // The hello may share a TCP segment with the 101: keep those bytes.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            context.pipeline.syncOperations.removeHandler(boundRequest.value, promise: nil)
                        })
                    )
                    try channel.pipeline.syncOperations.addHandler(request)
                }
            }
            .connect(host: "127.0.0.1", port: port)
        connected.whenFailure { hello.fail($0) }
        let deadline = loop.scheduleTask(in: timeout) { hello.fail(NotifierBenchError.socket("no hello within \(timeout.nanoseconds / 1_000_000_000) s")) }
        hello.futureResult.whenComplete { _ in deadline.cancel() }
        return hello.futureResult.flatMap { connected.map { (channel: $0, handler: handler) } }.flatMapError { error in
            connected.whenSuccess { $0.close(promise: nil) }
            return loop.makeFailedFuture(error)
        }
    }

    /// Sets every socket's event count to 0 (between runs, with no frame in flight).
    func resetEventCounts() {
        sockets.withLock { all in
            for socket in all { socket.handler.events.store(0, ordering: .relaxed) }
        }
    }

    /// Event frames each socket has received, smallest and largest.
    func eventCountRange() -> (min: Int, max: Int) {
        sockets.withLock { all in
            var low = Int.max, high = 0
            for socket in all {
                let n = socket.handler.events.load(ordering: .relaxed)
                low = Swift.min(low, n)
                high = Swift.max(high, n)
            }
            return (all.isEmpty ? 0 : low, high)
        }
    }

    /// Sockets closed by the server (close frame or TCP close) since they opened.
    var closedByServer: Int {
        sockets.withLock { $0.reduce(0) { $0 + ($1.handler.closed.load(ordering: .relaxed) ? 1 : 0) } }
    }

    /// Closes every socket (TCP close, no handshake) and waits for them, bounded.
    func closeAll(timeout: Duration = .seconds(30)) {
        let all = sockets.withLock { all in
            defer { all.removeAll() }
            return all
        }
        let futures = all.map { $0.channel.close() }
        let done = DispatchSemaphore(value: 0)
        EventLoopFuture.andAllComplete(futures, on: group.next()).whenComplete { _ in done.signal() }
        _ = done.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds) * 1000))
    }

    func shutdown() {
        closeAll()
        try? group.syncShutdownGracefully()
    }
}

/// One client socket after the upgrade: completes `hello` on the hello frame, counts event
/// frames (into its own counter and the fleet's sink), answers pings so that the server's
/// heartbeat keeps it open. Only atomics and lets: the fleet reads the counters from
/// another thread.
final class NotifierClientSocket: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Event frames received.
    let events = Atomic<Int>(0)
    /// Whether the server closed this socket.
    let closed = Atomic<Bool>(false)
    private let sink: PipelineSink
    private let hello: EventLoopPromise<Void>

    private static let helloPrefix = Array(#"{"type":"hello""#.utf8)
    private static let eventPrefix = Array(#"{"type":"event""#.utf8)

    init(sink: PipelineSink, hello: EventLoopPromise<Void>) {
        self.sink = sink
        self.hello = hello
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            // Server frames are not masked; a prefix check is enough to tell the two kinds
            // apart and keeps the client's per-frame cost low.
            let bytes = frame.data.readableBytesView
            if bytes.starts(with: Self.eventPrefix) {
                events.add(1, ordering: .relaxed)
                sink.counted(at: pipelineNowNs())
            } else if bytes.starts(with: Self.helloPrefix) {
                hello.succeed()
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            closed.store(true, ordering: .relaxed)
            hello.fail(NotifierBenchError.socket("closed by the server before the hello"))
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed.store(true, ordering: .relaxed)
        hello.fail(NotifierBenchError.socket("connection closed before the hello"))
        context.fireChannelInactive()
    }
}
