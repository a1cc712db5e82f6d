import Foundation
import SwitchboardHarness
import Synchronization

/// A chat client as an application would write one against the client protocol: it reads
/// frames on its own thread, answers pings, keeps each channel's position (the seq of the last
/// event that chained, with the stream's epoch; afresh when the epoch changes), records every
/// event frame that chains or repeats one (duplicates included, raw), and on a frame whose
/// `prev` is not the channel's position drops it and resumes the channel from there (the
/// replay brings what was missed, then that frame). When `reconnects`, it connects to the next
/// notifier after its socket ends and resumes (`?resume=…&epoch=…`) every channel it holds.
/// A resume the notifier refuses for now (`unavailable`, `busy`, `too_many_resumes`) is sent
/// again after a pause, as the JavaScript client does.
final class ChatClient: @unchecked Sendable {
    /// One event frame as it arrived.
    struct Received: Sendable, Equatable {
        var channel: String
        var seq: UInt64
        var eventID: String
        /// The notifier instance whose socket delivered it.
        var instance: String
        var prev: UInt64 = 0
        var epoch = ""
    }

    /// One `resumed` frame.
    struct Resumed: Sendable, Equatable {
        var channel: String
        var seq: UInt64
        var replayed: Int
        var complete: Bool
        var epoch = ""
        var reason: String?
        /// Event frames received on this client before this one (where it fell in the stream).
        var position = 0
    }

    private struct State {
        var events: [Received] = []
        var resumed: [Resumed] = []
        var errors: [String] = []
        /// Close codes of ended sockets (nil: the TCP connection ended without a close frame).
        var closes: [UInt16?] = []
        var instance: String?
        var connections = 0
        var lastSeq: [String: UInt64] = [:]
        var epoch = ""
        /// Channels resumed over the open socket after a gap, until their `resumed`.
        var healing: Set<String> = []
        /// Frames that did not chain (dropped, then healed by a resume).
        var gaps = 0
        /// Refused resumes to send again over the open socket, and when.
        var retries: [String: ContinuousClock.Instant] = [:]
        /// Resumes the notifier refused (error frames naming a channel).
        var refusals = 0
    }

    static let resumeRetryPause: Duration = .milliseconds(250)
    static let retryableRefusals: Set<String> = ["unavailable", "busy", "too_many_resumes"]

    let user: String
    private let token: String
    private let ports: [Int]
    private let reconnects: Bool
    private let state = Mutex(State())
    private let stopped = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    /// Connects to `ports[0]` (throws if that fails or no hello arrives), then reads on a
    /// thread of its own. Later connections go round the other ports.
    init(user: String, token: String, ports: [Int], reconnects: Bool = false) throws {
        self.user = user
        self.token = token
        self.ports = ports
        self.reconnects = reconnects
        let socket = try connect(port: ports[0], resume: false)
        Thread { [self] in run(socket, portIndex: 0) }.start()
    }

    var events: [Received] { state.withLock { $0.events } }
    func events(in channel: String) -> [Received] { state.withLock { $0.events.filter { $0.channel == channel } } }
    var resumed: [Resumed] { state.withLock { $0.resumed } }
    var errors: [String] { state.withLock { $0.errors } }
    var closes: [UInt16?] { state.withLock { $0.closes } }
    var instance: String? { state.withLock { $0.instance } }
    var connections: Int { state.withLock { $0.connections } }
    /// Event frames that did not chain and were healed by resuming the channel.
    var gaps: Int { state.withLock { $0.gaps } }
    /// Resumes the notifier refused (each retried when the refusal was for now).
    var refusals: Int { state.withLock { $0.refusals } }

    /// Distinct event ids received.
    var eventIDs: Set<String> { Set(events.map(\.eventID)) }

    /// Stops reading and closes the socket; waits for the reader thread.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(3)
        while !finished.load(ordering: .relaxed) && ContinuousClock.now < deadline { usleep(10_000) }
    }

    // MARK: Connection

    private func connect(port: Int, resume: Bool) throws -> WebSocketTestClient {
        // Resuming in the URL, one position per channel seen so far: the notifier starts the
        // replays before it can deliver a live frame to this socket.
        let (lastSeq, epoch) = state.withLock { ($0.lastSeq, $0.epoch) }
        let positions = lastSeq.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
        let path = resume && !positions.isEmpty ? "/ws?resume=\(positions.joined(separator: ","))\(epoch.isEmpty ? "" : "&epoch=\(epoch)")" : "/ws"
        let socket = try WebSocketTestClient(port: port, path: path, headers: ["Authorization": "Bearer \(token)"])
        guard let hello = try socket.receiveText(timeout: .seconds(5)),
              let object = Self.json(hello), object["type"] as? String == "hello" else {
            socket.closeSocket()
            throw WebSocketTestClient.Failure.io("no hello frame from port \(port)")
        }
        state.withLock { state in
            state.instance = object["instance"] as? String
            state.connections += 1
            state.healing = []
            state.retries = [:]
        }
        return socket
    }

    private func run(_ first: WebSocketTestClient, portIndex index: Int) {
        defer { finished.store(true, ordering: .relaxed) }
        var socket: WebSocketTestClient? = first
        var portIndex = index
        while !stopped.load(ordering: .relaxed) {
            guard let current = socket else {
                // Reconnect round the other notifiers until one accepts.
                portIndex = (portIndex + 1) % ports.count
                socket = try? connect(port: ports[portIndex], resume: true)
                if socket == nil { usleep(100_000) }
                continue
            }
            for resume in dueRetries() { try? current.send(text: resume) }
            let frame: WebSocketTestClient.Frame?
            do {
                frame = try current.receive(timeout: .milliseconds(100))
            } catch {
                frame = nil
            }
            guard let frame else {
                if current.isClosed { ended(current, code: nil, socket: &socket) }
                continue
            }
            switch frame.opcode {
            case 0x1:
                if let resume = handle(frame.text) { try? current.send(text: resume) }
            case 0x8:
                try? current.sendClose(code: frame.closeCode ?? 1000)
                ended(current, code: frame.closeCode, socket: &socket)
            case 0x9: try? current.send(opcode: 0xA, payload: frame.payload)
            default: break
            }
        }
        // A client that leaves says so (close 1000) before closing the connection.
        try? socket?.sendClose(code: 1000)
        socket?.closeSocket()
    }

    private func ended(_ current: WebSocketTestClient, code: UInt16?, socket: inout WebSocketTestClient?) {
        current.closeSocket()
        state.withLock { $0.closes.append(code) }
        if reconnects {
            socket = nil
        } else {
            stopped.store(true, ordering: .relaxed)
            socket = nil
        }
    }

    /// Resume frames for the refused resumes whose pause is over.
    private func dueRetries() -> [String] {
        let now = ContinuousClock.now
        return state.withLock { state in
            let due = state.retries.filter { $0.value <= now }.map(\.key)
            return due.compactMap { channel in
                state.retries[channel] = nil
                guard let last = state.lastSeq[channel], state.healing.insert(channel).inserted else { return nil }
                return Self.resumeFrame(channel, after: last, epoch: state.epoch)
            }
        }
    }

    private static func resumeFrame(_ channel: String, after last: UInt64, epoch: String) -> String {
        #"{"type":"resume","channel":"\#(channel)","after_seq":\#(last)\#(epoch.isEmpty ? "" : #","epoch":"\#(epoch)""#)}"#
    }

    /// Handles one text frame; returns a frame to send back (a `resume` after a gap).
    private func handle(_ text: String) -> String? {
        guard let object = Self.json(text) else { return nil }
        switch object["type"] as? String {
        case "event":
            guard let channel = object["channel"] as? String, let seq = (object["seq"] as? NSNumber)?.uint64Value else { return nil }
            let id = (object["event"] as? [String: Any])?["id"] as? String ?? ""
            let prev = (object["prev"] as? NSNumber)?.uint64Value ?? 0
            let epoch = object["epoch"] as? String ?? ""
            return state.withLock { state -> String? in
                if !epoch.isEmpty, epoch != state.epoch {
                    // Numbered anew: the positions of the old stream mean nothing now.
                    if !state.epoch.isEmpty { state.lastSeq = [:] }
                    state.epoch = epoch
                }
                let received = Received(channel: channel, seq: seq, eventID: id, instance: state.instance ?? "?", prev: prev, epoch: epoch)
                guard let last = state.lastSeq[channel] else {
                    state.events.append(received)
                    state.lastSeq[channel] = seq
                    return nil
                }
                if seq <= last {
                    state.events.append(received)  // a duplicate, recorded raw
                    return nil
                }
                guard prev == last else {
                    // Missed something: drop this one and resume from the position.
                    state.gaps += 1
                    guard state.healing.insert(channel).inserted else { return nil }
                    return Self.resumeFrame(channel, after: last, epoch: state.epoch)
                }
                state.events.append(received)
                state.lastSeq[channel] = seq
                return nil
            }
        case "resumed":
            guard let channel = object["channel"] as? String else { return nil }
            var resumed = Resumed(
                channel: channel, seq: (object["seq"] as? NSNumber)?.uint64Value ?? 0,
                replayed: (object["replayed"] as? NSNumber)?.intValue ?? 0, complete: object["complete"] as? Bool ?? false,
                epoch: object["epoch"] as? String ?? "", reason: object["reason"] as? String
            )
            state.withLock { state in
                resumed.position = state.events.count
                state.resumed.append(resumed)
                state.healing.remove(channel)
                if resumed.reason == "epoch_changed" {
                    state.lastSeq[channel] = nil
                } else if resumed.seq > (state.lastSeq[channel] ?? 0) {
                    state.lastSeq[channel] = resumed.seq  // where the replay left the channel
                }
            }
        case "error":
            state.withLock { state in
                state.errors.append(text)
                // A refused resume: the channel is no longer being healed; one refused for now
                // is tried again (a gap left alone would drop every later frame of the channel).
                guard let channel = object["channel"] as? String, let code = object["code"] as? String, code != "already_resuming" else { return }
                state.refusals += 1
                state.healing.remove(channel)
                if Self.retryableRefusals.contains(code), state.lastSeq[channel] != nil { state.retries[channel] = .now + Self.resumeRetryPause }
            }
        default:
            break
        }
        return nil
    }

    static func json(_ text: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }
}

extension [ChatClient.Received] {
    /// Seqs in arrival order.
    var seqs: [UInt64] { map(\.seq) }

    /// Seqs in arrival order with repeats dropped, as the protocol tells clients to do.
    var firstSeen: [UInt64] {
        var seen = Set<UInt64>()
        return map(\.seq).filter { seen.insert($0).inserted }
    }

    /// How many frames repeated a seq already received.
    var duplicates: Int { count - Set(map(\.seq)).count }

    var isStrictlyIncreasing: Bool { zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 } }

    /// First-seen events (of one channel) after the first whose `prev` is not the seq seen
    /// before them: where a client checking the chain would have seen a gap.
    var chainBreaks: [ChatClient.Received] {
        var seen = Set<UInt64>()
        var last: UInt64?
        var breaks: [ChatClient.Received] = []
        for event in self where seen.insert(event.seq).inserted {
            if let last, event.prev != last { breaks.append(event) }
            last = event.seq
        }
        return breaks
    }
}
