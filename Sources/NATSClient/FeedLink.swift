import Foundation

/// A `PullFeed`'s own connection to the server its `NATSConnection` is on, for the fan-out's
/// hot path: the feed's inbox is read in place on the consuming thread, and what that thread
/// sends — pull requests, deliveries, the PING of a flush, acks — is gathered and written in
/// one `send` when it next reads, flushes or acks.
///
/// Through nats.c each read woke two threads (nats.c's reader, then the consuming thread) and
/// each publish was a write of its own; here a pipeline turn is one wake and one write.
///
/// A flush confirms only deliveries published on the connection it is answered on: when the
/// connection was re-established after the first of them was published, it throws (which of
/// them reached the server is unknown), so the caller publishes them again. The connection
/// is re-established by the next call after a failure; pull requests sent on the old one are
/// gone, which `generation` tells the feed. When the server has said nothing for
/// `idleCheck`, a PING goes out; one unanswered for as long drops the connection.
///
/// Narrow like every path that speaks the protocol itself (`PlainLogin`): plain TCP with
/// user/password or a token; anything else throws `unsupported` at start.
final class FeedLink: @unchecked Sendable {
    static let idleCheck: Duration = .seconds(5)

    private let connection: NATSConnection
    private let subscribe: [UInt8]
    private let lock = NSLock()
    // Everything below is guarded by `lock`.
    private var socket: ProtocolSocket?
    private var outgoing: [UInt8] = []
    /// Counts the connections made: one more after every reconnect.
    private var connections = 0
    /// The connection the deliveries published since the last flush went out on (nil: none).
    private var unconfirmedOn: Int?
    private var pingsOutstanding = 0
    private var pingSentAt: ContinuousClock.Instant?
    /// Why the connection last failed, for the next error.
    private var lastFailure = ""

    /// Connects and subscribes to `inboxSubject` (typically `<inbox>.*`).
    init(connection: NATSConnection, inboxSubject: String) throws {
        self.connection = connection
        subscribe = Array("SUB \(inboxSubject) 1\r\n".utf8)
        try lock.withLock { try connectLocked() }
    }

    /// How many connections were made so far (pull requests of an earlier one are gone).
    var generation: Int { lock.withLock { connections } }

    /// Adds a publish to what goes out with the next write. `confirmable`: a delivery that the
    /// next `flush` confirms.
    func publish(_ subject: String, reply: String? = nil, payload: [UInt8], confirmable: Bool = false) {
        lock.withLock {
            outgoing.append(contentsOf: "PUB \(subject) \(reply.map { "\($0) " } ?? "")\(payload.count)\r\n".utf8)
            outgoing.append(contentsOf: payload)
            outgoing.append(contentsOf: Self.lineEnd)
            if confirmable && unconfirmedOn == nil { unconfirmedOn = connections }
        }
    }

    /// Writes what was gathered now.
    func send() throws {
        try lock.withLock {
            try withSocket { socket in try write(socket) }
        }
    }

    /// Writes what was gathered, then hands `body` up to `limit` messages of the inbox: waits
    /// at most `timeout` for the first, then takes only what has arrived. Each is lent in
    /// place (valid inside the call). Returns how many were handed over.
    func read(limit: Int, timeout: Duration, _ body: (ServerMessage, UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Int {
        try lock.withLock {
            try withSocket { socket in
                try write(socket)
                let deadline = ContinuousClock.now + timeout
                var handed = 0
                while handed < limit {
                    while handed < limit, let frame = try socket.nextFrame() {
                        if case .message(let message) = frame {
                            try body(message, socket.bytes)
                            handed += 1
                        } else {
                            try control(frame, socket)
                        }
                    }
                    try write(socket)  // PONGs
                    guard handed < limit else { break }
                    let wait = handed == 0 ? max(.zero, deadline - .now) : .zero
                    guard try socket.receive(waiting: min(wait, Self.idleCheck)) else {
                        try checkIdle(socket)
                        if handed > 0 || ContinuousClock.now >= deadline { break }
                        continue
                    }
                }
                return handed
            }
        }
    }

    /// Confirms the deliveries published since the last flush: writes them and a PING and
    /// returns when its PONG came (the server answers in order). Inbox messages that arrive
    /// meanwhile go to `body`. Throws when they did not all go out on this connection.
    func flush(timeout: Duration, _ body: (ServerMessage, UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        try lock.withLock {
            guard let first = unconfirmedOn else { return }
            unconfirmedOn = nil
            guard first == connections, socket != nil else {
                throw NATSError.connectionClosed(operation: "flush of the pull feed's connection: it was re-established after the deliveries were published (\(lastFailure))")
            }
            let answered = try withSocket { socket in
                outgoing.append(contentsOf: ProtocolSocket.ping)
                pingsOutstanding += 1
                try write(socket)
                let deadline = ContinuousClock.now + timeout
                while pingsOutstanding > 0 {
                    while pingsOutstanding > 0, let frame = try socket.nextFrame() {
                        if case .message(let message) = frame { try body(message, socket.bytes) } else { try control(frame, socket) }
                    }
                    try write(socket)
                    guard pingsOutstanding > 0 else { break }
                    let left = deadline - .now
                    guard left > .zero else { return false }
                    _ = try socket.receive(waiting: left)
                }
                return true
            }
            // A slow server keeps the connection, as nats.c's flush does: dropping it would
            // orphan the open pull requests (their messages lost until the ack wait) when the
            // server is merely busy. Its PONG still counts; the next flush waits for it too.
            guard answered else { throw NATSError.timeout(operation: "pull feed flush within \(timeout)") }
        }
    }

    /// Ends the connection (for tests of a connection lost mid-way): the next call reconnects.
    func dropConnection() {
        lock.withLock {
            socket?.shutdown()
            socket = nil
            lastFailure = "dropped"
        }
    }

    /// Closes the connection for good (the next call reconnects, which the feed never makes).
    func close() {
        lock.withLock {
            socket?.shutdown()
            socket = nil
        }
    }

    private func control(_ frame: ServerFrame, _ socket: ProtocolSocket) throws {
        switch frame {
        case .ping:
            outgoing.append(contentsOf: ProtocolSocket.pong)
        case .pong:
            pingsOutstanding = max(0, pingsOutstanding - 1)
            if pingsOutstanding == 0 { pingSentAt = nil }
        case .error(let range):
            throw NATSError.failed(operation: socket.description, status: "server error \(String(decoding: socket.bytes[range], as: UTF8.self))")
        case .ok, .info, .message:
            break
        }
    }

    /// Nothing heard for `idleCheck`: a PING goes out; one unanswered for as long fails.
    private func checkIdle(_ socket: ProtocolSocket) throws {
        let now = ContinuousClock.now
        guard now - socket.lastReceive >= Self.idleCheck else { return }
        if let sent = pingSentAt {
            if now - sent >= Self.idleCheck { throw NATSError.timeout(operation: "\(socket.description): no PONG within \(Self.idleCheck)") }
            return
        }
        pingSentAt = now
        pingsOutstanding += 1
        outgoing.append(contentsOf: ProtocolSocket.ping)
        try write(socket)
    }

    private func write(_ socket: ProtocolSocket) throws {
        guard !outgoing.isEmpty else { return }
        try socket.send(outgoing)
        outgoing.removeAll(keepingCapacity: true)
    }

    /// Runs `body` with the connection, making it first when there is none; any failure drops
    /// it (the next call reconnects).
    private func withSocket<T>(_ body: (ProtocolSocket) throws -> T) throws -> T {
        if socket == nil { try connectLocked() }
        do {
            return try body(socket!)
        } catch {
            socket?.shutdown()
            socket = nil
            lastFailure = "\(error)"
            throw error
        }
    }

    private func connectLocked() throws {
        let login = try PlainLogin(connection: connection, name: "\(connection.options.name)-feed", purpose: "pull feed")
        socket = try ProtocolSocket.open(login: login, subscribe: subscribe, timeout: connection.options.connectTimeout,
                                         description: "pull feed at \(login.redactedURL)", purpose: "pull feed")
        connections += 1
        // What was gathered for the old connection is dropped: requests are sent again, and
        // unconfirmed deliveries fail their flush.
        outgoing.removeAll(keepingCapacity: true)
        pingsOutstanding = 0
        pingSentAt = nil
    }

    private static let lineEnd = Array("\r\n".utf8)
}
