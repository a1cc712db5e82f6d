import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// The WebSocket clients of `switchboard-bench fanout`: one cheap SwiftNIO channel per online
/// user, connected to that user's notifier with its own JWT. Client `i` lives on event loop
/// `i % threads` and records into that loop's `EndToEndRecorder`, so receiving takes no
/// locks. Sockets are spread over loopback source addresses 127.0.0.2… (`perAddress` each)
/// so that tens of thousands of sockets do not exhaust one address's ephemeral ports.
final class EndToEndClientFleet: @unchecked Sendable {
    struct Client {
        var user: Int
        var port: Int
        var token: String
    }

    let loops: [any EventLoop]
    private let group: MultiThreadedEventLoopGroup
    /// One per loop, sized for the one phase the clients serve (handlers keep their loop's).
    let recorders: [EndToEndRecorder]
    private let channels = Mutex<[any Channel]>([])
    let counters = EndToEndFleetCounters()
    let perAddress: Int

    init(threads: Int, events: Int, perAddress: Int = 4_000) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        loops = Array(group.makeIterator())
        recorders = loops.map { _ in EndToEndRecorder(events: events) }
        self.perAddress = perAddress
    }

    var connected: Int { channels.withLock { $0.count } }

    /// Connects every client (at most `concurrency` handshakes in flight) and waits for each
    /// upgrade; returns the failures (counted, the first error kept).
    func connect(_ clients: [Client], concurrency: Int) -> (failed: Int, firstError: String?) {
        let gate = DispatchSemaphore(value: max(1, concurrency))
        let pending = DispatchGroup()
        let failed = Atomic<Int>(0)
        let firstError = Mutex<String?>(nil)
        for (index, client) in clients.enumerated() {
            gate.wait()
            pending.enter()
            let loopIndex = index % loops.count
            let future = connect(client, loop: loops[loopIndex], recorder: recorders[loopIndex],
                                 source: "127.0.0.\(2 + index / perAddress)")
            future.whenComplete { [self] result in
                switch result {
                case .success(let channel): channels.withLock { $0.append(channel) }
                case .failure(let error):
                    failed.add(1, ordering: .relaxed)
                    firstError.withLock { $0 = $0 ?? "\(error)" }
                }
                gate.signal()
                pending.leave()
            }
        }
        pending.wait()
        return (failed.load(ordering: .relaxed), firstError.withLock { $0 })
    }

    private func connect(_ client: Client, loop: any EventLoop, recorder: EndToEndRecorder, source: String) -> EventLoopFuture<any Channel> {
        let upgraded = loop.makePromise(of: Void.self)
        let counters = counters
        let user = client.user
        let bootstrap: ClientBootstrap
        do {
            bootstrap = try ClientBootstrap(group: loop)
                .bind(to: SocketAddress(ipAddress: source, port: 0))
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 20) { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                let handler = EndToEndFrameHandler(user: user, recorder: recorder, counters: counters)
                                try channel.pipeline.syncOperations.addHandler(handler)
                                upgraded.succeed()
                            }
                        }
                        let request = WebSocketUpgradeRequest(token: client.token, port: client.port, upgraded: upgraded, failure: EndToEndError.upgrade)
                        let bound = NIOLoopBound(request, eventLoop: channel.eventLoop)
                        // The hello may share a TCP segment with the 101: keep those bytes.
                        try channel.pipeline.syncOperations.addHTTPClientHandlers(
                            leftOverBytesStrategy: .forwardBytes,
                            withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                                context.pipeline.syncOperations.removeHandler(bound.value, promise: nil)
                            })
                        )
                        try channel.pipeline.syncOperations.addHandler(request)
                    }
                }
        } catch {
            return loop.makeFailedFuture(error)
        }
        return bootstrap.connect(host: "127.0.0.1", port: client.port).flatMap { channel in
            let timeout = loop.scheduleTask(in: .seconds(20)) { upgraded.fail(EndToEndError.upgrade("no upgrade within 20 s")) }
            return upgraded.futureResult.map { _ -> any Channel in
                timeout.cancel()
                return channel
            }.flatMapError { error in
                timeout.cancel()
                channel.close(promise: nil)
                return loop.makeFailedFuture(error)
            }
        }
    }

    /// The recorders, read on their own loops (every write to them happens there).
    func quiescedRecorders() -> [EndToEndRecorder] {
        for loop in loops { try? loop.submit {}.wait() }
        return recorders
    }

    var received: Int { recorders.reduce(0) { $0 + $1.received.load(ordering: .relaxed) } }

    func setRecordFrom(_ ns: UInt64) {
        for recorder in recorders { recorder.recordFromNs.store(ns, ordering: .relaxed) }
    }

    func shutdown() {
        let open = channels.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in open { channel.close(promise: nil) }
        try? group.syncShutdownGracefully()
    }
}

enum EndToEndError: Error, CustomStringConvertible {
    case upgrade(String)
    case setup(String)

    var description: String {
        switch self {
        case .upgrade(let what): "WebSocket upgrade failed: \(what)"
        case .setup(let what): "fanout bench set-up failed: \(what)"
        }
    }
}

/// Counters every client of a fleet shares.
final class EndToEndFleetCounters: Sendable {
    /// Hello frames received (one per socket the notifier registered).
    let hellos = Atomic<Int>(0)
    /// Close frames received from a notifier (slow consumer, heartbeat, drain).
    let closedByServer = Atomic<Int>(0)
    /// Of those: 4001 heartbeat timeout, 4008 slow consumer.
    let closedHeartbeat = Atomic<Int>(0)
    let closedSlowConsumer = Atomic<Int>(0)
}

/// Parses event frames into the loop's recorder and answers pings (the notifier closes a
/// silent socket after two heartbeat intervals).
private final class EndToEndFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let user: Int
    private let recorder: EndToEndRecorder
    private let counters: EndToEndFleetCounters
    private var sawHello = false

    init(user: Int, recorder: EndToEndRecorder, counters: EndToEndFleetCounters) {
        self.user = user
        self.recorder = recorder
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            let now = pipelineNowNs()
            let parsed = frame.data.withUnsafeReadableBytes { EndToEndParse.eventFrame($0) }
            if let parsed {
                recorder.record(receiver: user, channel: parsed.channel, order: parsed.seq, event: parsed.event, sentNs: parsed.sentNs, now: now)
            } else if !sawHello {
                sawHello = true
                counters.hellos.add(1, ordering: .relaxed)
            } else {
                recorder.unreadable()
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.data)), promise: nil)
        case .connectionClose:
            counters.closedByServer.add(1, ordering: .relaxed)
            var data = frame.data
            switch data.readInteger(as: UInt16.self) {
            case 4001: counters.closedHeartbeat.add(1, ordering: .relaxed)
            case 4008: counters.closedSlowConsumer.add(1, ordering: .relaxed)
            default: break
            }
            context.close(promise: nil)
        default:
            break
        }
    }
}
