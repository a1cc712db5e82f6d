import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// Client WebSockets on one small SwiftNIO event-loop group: the bench's fleets of tens of
/// thousands of cheap sockets and the tests' NIO client.
///
/// Socket `i` (counted over the fleet's life) lives on loop `i % loops.count`. With
/// `perAddress`, it is bound to the loopback source address 127.0.0.(2 + firstAddressBlock +
/// i / perAddress): from one source address, tens of thousands of sockets would run out of
/// ephemeral ports (32768–60999 here). After the upgrade, each socket's pipeline ends in a
/// `Socket` handler the caller makes; the socket counts as open once that handler completes
/// the `ready` promise it was given (on the server's hello, say), or right after the upgrade
/// with `readyOnUpgrade`.
public final class WebSocketClientFleet<Socket: ChannelHandler & Sendable>: Sendable {
    /// Where one socket connects (127.0.0.1:`port`, `GET /ws`) and as whom.
    public struct Target: Sendable {
        public var port: Int
        public var token: String
        public init(port: Int, token: String) {
            self.port = port
            self.token = token
        }
    }

    /// What a socket's handler may want to know: its number and its loop.
    public struct Placement: Sendable {
        public let index: Int
        public let loopIndex: Int
    }

    /// What one `open` call achieved.
    public struct OpenResult: Sendable {
        public var opened: Int
        public var failed: Int
        public var firstError: String?
        public var seconds: Double
    }

    public let group: MultiThreadedEventLoopGroup
    public let loops: [any EventLoop]
    public let perAddress: Int?
    public let firstAddressBlock: Int
    public let maxFrameSize: Int
    private let open = Mutex<[(channel: any Channel, socket: Socket)]>([])
    private let nextIndex = Atomic<Int>(0)

    /// `perAddress`: sockets per loopback source address (nil: no bind, the kernel picks
    /// 127.0.0.1). `firstAddressBlock` lets a second fleet use other addresses than a first
    /// one whose closed sockets sit in TIME_WAIT on theirs.
    public init(threads: Int, perAddress: Int? = nil, firstAddressBlock: Int = 0, maxFrameSize: Int = 1 << 20) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        loops = Array(group.makeIterator())
        self.perAddress = perAddress
        self.firstAddressBlock = firstAddressBlock
        self.maxFrameSize = maxFrameSize
    }

    /// Sockets open now.
    public var count: Int { open.withLock { $0.count } }
    /// The handlers of the open sockets.
    public var sockets: [Socket] { open.withLock { $0.map(\.socket) } }

    /// Opens one socket per target, at most `concurrency` handshakes in flight, and returns
    /// once each is ready or failed (within `timeout`). A socket that fails is closed, not kept.
    public func open(_ targets: [Target], concurrency: Int, timeout: TimeAmount, readyOnUpgrade: Bool = false,
                     makeSocket: @escaping @Sendable (Placement, EventLoopPromise<Void>) -> Socket) -> OpenResult {
        let started = ContinuousClock.now
        let gate = DispatchSemaphore(value: max(1, concurrency))
        let pending = DispatchGroup()
        let failures = Atomic<Int>(0)
        let firstError = Mutex<String?>(nil)
        for target in targets {
            gate.wait()
            pending.enter()
            connect(target, timeout: timeout, readyOnUpgrade: readyOnUpgrade, makeSocket: makeSocket).whenComplete { result in
                if case .failure(let error) = result {
                    failures.add(1, ordering: .relaxed)
                    firstError.withLock { $0 = $0 ?? "\(error)" }
                }
                gate.signal()
                pending.leave()
            }
        }
        pending.wait()
        let failed = failures.load(ordering: .relaxed)
        let elapsed = ContinuousClock.now - started
        return OpenResult(opened: targets.count - failed, failed: failed, firstError: firstError.withLock { $0 },
                          seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// One socket: TCP connect, HTTP upgrade with `Authorization: Bearer`, then readiness.
    /// Fails with `WebSocketClientError.refused` when the server does not upgrade.
    public func connect(_ target: Target, timeout: TimeAmount, readyOnUpgrade: Bool = false,
                        makeSocket: @Sendable (Placement, EventLoopPromise<Void>) -> Socket) -> EventLoopFuture<Socket> {
        let index = nextIndex.wrappingAdd(1, ordering: .relaxed).oldValue
        let placement = Placement(index: index, loopIndex: index % loops.count)
        let loop = loops[placement.loopIndex]
        let ready = loop.makePromise(of: Void.self)
        let socket = makeSocket(placement, ready)
        var bootstrap = ClientBootstrap(group: loop).channelOption(.socketOption(.so_reuseaddr), value: 1).connectTimeout(timeout)
        if let perAddress {
            let octet = 2 + firstAddressBlock + index / perAddress
            guard octet <= 254, let source = try? SocketAddress(ipAddress: "127.0.0.\(octet)", port: 0) else {
                return loop.makeFailedFuture(WebSocketClientError.notReady("out of source addresses at socket \(index + 1) (\(perAddress) per address)"))
            }
            bootstrap = bootstrap.bind(to: source)
        }
        let maxFrameSize = maxFrameSize
        let connected = bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: maxFrameSize) { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(socket)
                        if readyOnUpgrade { ready.succeed() }
                    }
                }
                let request = WebSocketUpgradeRequest(token: target.token, port: target.port, upgraded: ready)
                let bound = NIOLoopBound(request, eventLoop: channel.eventLoop)
                // The server's first frame may share a TCP segment with the 101: keep those bytes.
                try channel.pipeline.syncOperations.addHTTPClientHandlers(
                    leftOverBytesStrategy: .forwardBytes,
                    withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                        // HTTP is over: the request handler must not see WebSocket bytes.
                        context.pipeline.syncOperations.removeHandler(bound.value, promise: nil)
                    })
                )
                try channel.pipeline.syncOperations.addHandler(request)
            }
        }.connect(host: "127.0.0.1", port: target.port)
        connected.whenFailure { ready.fail($0) }
        let deadline = loop.scheduleTask(in: timeout) {
            ready.fail(WebSocketClientError.notReady("not ready within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
        ready.futureResult.whenComplete { _ in deadline.cancel() }
        return ready.futureResult.flatMap { connected }.map { channel in
            self.open.withLock { $0.append((channel, socket)) }
            return socket
        }.flatMapError { error in
            connected.whenSuccess { $0.close(promise: nil) }
            return loop.makeFailedFuture(error)
        }
    }

    /// Closes every socket (TCP close, no handshake) and waits for them, bounded.
    public func closeAll(timeout: Duration = .seconds(30)) {
        let all = open.withLock { all in
            defer { all.removeAll() }
            return all
        }
        let done = DispatchSemaphore(value: 0)
        EventLoopFuture.andAllComplete(all.map { $0.channel.close() }, on: loops[0]).whenComplete { _ in done.signal() }
        _ = done.wait(timeout: .now() + .seconds(Int(timeout.components.seconds)))
    }

    /// Closes every socket and stops the event loops.
    public func shutdown() {
        closeAll()
        try? group.syncShutdownGracefully()
    }
}
