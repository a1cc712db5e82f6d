import Foundation
import NIOCore
import NIOWebSocket
import SwitchboardHarness
import Synchronization

/// The WebSocket clients of `switchboard-bench fanout`: one cheap SwiftNIO channel per online
/// user (`WebSocketClientFleet`), connected to that user's notifier with its own JWT. Client
/// `i` lives on event loop `i % threads` and records into that loop's `EndToEndRecorder`, so
/// receiving takes no locks. Sockets are spread over loopback source addresses 127.0.0.2…
/// (`perAddress` each).
final class EndToEndClientFleet: Sendable {
    struct Client {
        var user: Int
        var port: Int
        var token: String
    }

    private let fleet: WebSocketClientFleet<EndToEndFrameHandler>
    /// One per loop, sized for the one phase the clients serve (handlers keep their loop's).
    let recorders: [EndToEndRecorder]
    let counters = EndToEndFleetCounters()

    init(threads: Int, events: Int, perAddress: Int = 4_000) {
        fleet = WebSocketClientFleet(threads: threads, perAddress: perAddress)
        recorders = fleet.loops.map { _ in EndToEndRecorder(events: events) }
    }

    var connected: Int { fleet.count }

    /// Connects every client (at most `concurrency` handshakes in flight) and waits for each
    /// upgrade; returns the failures (counted, the first error kept). Called once per fleet:
    /// the fleet numbers sockets in the order they are opened, so socket i is client i.
    func connect(_ clients: [Client], concurrency: Int) -> (failed: Int, firstError: String?) {
        let users = clients.map(\.user)
        let recorders = recorders, counters = counters
        let result = fleet.open(clients.map { .init(port: $0.port, token: $0.token) }, concurrency: concurrency,
                                timeout: .seconds(20), readyOnUpgrade: true) { placement, _ in
            EndToEndFrameHandler(user: users[placement.index], recorder: recorders[placement.loopIndex], counters: counters)
        }
        return (result.failed, result.firstError)
    }

    /// The recorders, read on their own loops (every write to them happens there).
    func quiescedRecorders() -> [EndToEndRecorder] {
        for loop in fleet.loops { try? loop.submit {}.wait() }
        return recorders
    }

    var received: Int { recorders.reduce(0) { $0 + $1.received.load(ordering: .relaxed) } }

    func setRecordFrom(_ ns: UInt64) {
        for recorder in recorders { recorder.recordFromNs.store(ns, ordering: .relaxed) }
    }

    func shutdown() { fleet.shutdown() }
}

enum EndToEndError: Error, CustomStringConvertible {
    case setup(String)

    var description: String {
        switch self {
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
/// silent socket after two heartbeat intervals). Runs on its socket's loop only.
final class EndToEndFrameHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let user: Int
    private let recorder: EndToEndRecorder
    private let counters: EndToEndFleetCounters
    private let sawHello = Atomic<Bool>(false)

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
            } else if !sawHello.load(ordering: .relaxed) {
                sawHello.store(true, ordering: .relaxed)
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
