import Foundation
import NIOCore
import NIOWebSocket
import SwitchboardHarness
import Synchronization

/// The WebSocket clients of `switchboard-bench notifier`: many cheap SwiftNIO channels on one
/// small event-loop group (`WebSocketClientFleet`), so that the client side costs little next
/// to the notifier. A socket is open once the notifier's hello frame arrived.
final class NotifierClientFleet: Sendable {
    private let fleet: WebSocketClientFleet<NotifierClientSocket>
    let port: Int
    /// Event frames received by every socket together (first/last receive instants).
    let sink = PipelineSink()

    /// Sockets per source address at most, so that every address stays far from the
    /// ephemeral port range's size.
    static let defaultSocketsPerAddress = 5_000

    /// `firstAddressBlock`: the first source address is 127.0.0.(2 + firstAddressBlock), so
    /// that a second fleet avoids the addresses where the first one's sockets sit in TIME_WAIT.
    init(threads: Int, port: Int, socketsPerAddress: Int = defaultSocketsPerAddress, firstAddressBlock: Int = 0) {
        fleet = WebSocketClientFleet(threads: threads, perAddress: socketsPerAddress, firstAddressBlock: firstAddressBlock, maxFrameSize: 1 << 16)
        self.port = port
    }

    var count: Int { fleet.count }

    /// Opens one socket per `(user, token)`, at most `concurrency` handshakes in flight, and
    /// returns once every socket has received its hello frame or failed (each within
    /// `timeout`). A socket that fails is closed and not kept.
    func open(_ users: [(user: String, token: String)], concurrency: Int, timeout: TimeAmount = .seconds(30)) -> WebSocketClientFleet<NotifierClientSocket>.OpenResult {
        let sink = sink
        return fleet.open(users.map { .init(port: port, token: $0.token) }, concurrency: concurrency, timeout: timeout) { _, hello in
            NotifierClientSocket(sink: sink, hello: hello)
        }
    }

    /// Sets every socket's event count to 0 (between runs, with no frame in flight).
    func resetEventCounts() {
        for socket in fleet.sockets { socket.events.store(0, ordering: .relaxed) }
    }

    /// Event frames each socket has received, smallest and largest.
    func eventCountRange() -> (min: Int, max: Int) {
        let counts = fleet.sockets.map { $0.events.load(ordering: .relaxed) }
        return (counts.min() ?? 0, counts.max() ?? 0)
    }

    /// Sockets closed by the server (close frame or TCP close) since they opened.
    var closedByServer: Int {
        fleet.sockets.reduce(0) { $0 + ($1.closed.load(ordering: .relaxed) ? 1 : 0) }
    }

    /// Closes every socket (TCP close, no handshake) and waits for them, bounded.
    func closeAll(timeout: Duration = .seconds(30)) { fleet.closeAll(timeout: timeout) }

    func shutdown() { fleet.shutdown() }
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
