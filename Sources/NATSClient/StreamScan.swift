import CNATS
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reads a stream in order, from a sequence, for bulk replays: what `OrderedConsumer` does,
/// but over a TCP connection of its own whose bytes it parses where they were received, on
/// the reading thread.
///
/// Why not nats.c: every message an ordered consumer delivers is parsed by nats.c's reader
/// thread, copied into a message it allocates, queued under the subscription's lock and
/// handed to the reading thread with a condition signal. In a profile of a 20 M replay that
/// hand-off (reader thread, locks, context switches, allocation) was over a third of the
/// fan-out's CPU. Here one `recv` brings hundreds of messages and each is lent in place.
///
/// Narrower than nats.c on purpose: plain TCP, and no credentials or user and password (or a
/// token) in the URL or the options; no reconnect. Anything else throws `unsupported` at
/// start and every failure while reading (a closed socket, a gap in the deliveries, a missed
/// heartbeat) throws: the caller goes on with an `OrderedConsumer` after the last sequence it
/// handled. The consumer is an ephemeral push consumer with flow control and no acks, as
/// nats.c's ordered consumer is; flow-control requests and stall notices are answered here.
///
/// `read` must be called from one thread at a time; `close` may come from any thread.
public final class StreamScan: OrderedStreamReader, @unchecked Sendable {
    /// The server's idle heartbeat; no byte for three of them fails the read.
    public static let heartbeat: Duration = .seconds(2)

    private let jetStream: JetStream
    private let stream: String
    /// The consumer's name ("" until it is created).
    private var consumer = ""
    private let description: String
    private let socket: ProtocolSocket
    private let isClosed = Mutex(false)
    private var nextConsumerSequence: UInt64 = 1
    /// Flow-control requests and stall notices answered (for tests).
    private(set) var flowControlAnswers = 0
    private static let subscriptionID: UInt64 = 1

    /// Connects, subscribes to a new inbox and creates the consumer delivering `stream` from
    /// `startSequence` (0: from the first message). `createTimeout` bounds the creation
    /// request (on a large stream the server takes long to create it).
    public init(jetStream: JetStream, stream: String, startSequence: UInt64, createTimeout: Duration = .seconds(60)) throws {
        try JetStream.validateStreamName(stream)
        let connection = jetStream.connection
        let options = connection.options
        let login = try PlainLogin(connection: connection, name: "\(options.name)-scan", purpose: "stream scan")
        self.jetStream = jetStream
        self.stream = stream
        description = "stream scan of \(stream) from \(login.redactedURL)"
        let deliverSubject = connection.newInbox() + ".scan"
        socket = try ProtocolSocket.open(login: login, subscribe: Array("SUB \(deliverSubject) \(Self.subscriptionID)\r\n".utf8),
                                         timeout: options.connectTimeout, description: description, purpose: "stream scan")
        // A failure from here on leaves the clean-up to deinit (the object is whole).
        do {
            var config: [String: Any] = ["deliver_subject": deliverSubject, "ack_policy": "none", "max_deliver": 1, "flow_control": true,
                                         "idle_heartbeat": Self.heartbeat.natsNanoseconds, "mem_storage": true, "num_replicas": 1,
                                         "inactive_threshold": Duration.seconds(10).natsNanoseconds, "replay_policy": "instant"]
            if startSequence > 0 {
                config["deliver_policy"] = "by_start_sequence"
                config["opt_start_seq"] = startSequence
            } else {
                config["deliver_policy"] = "all"
            }
            let request = try JSONSerialization.data(withJSONObject: ["stream_name": stream, "config": config], options: [.sortedKeys])
            let reply = try jetStream.apiRequest("CONSUMER.CREATE.\(stream)", payload: Array(request), operation: "create the scan consumer on \(stream)", timeout: createTimeout)
            guard case .string(let name)? = reply["name"] else {
                throw NATSError.malformedResponse(operation: "create the scan consumer on \(stream)", reason: "no consumer name in the reply")
            }
            consumer = name
        }
    }

    deinit {
        close()
    }

    /// Deletes the consumer (best effort: the server removes it anyway 10 s after the socket
    /// goes) and shuts the socket, which ends a read in progress. Idempotent.
    public func close() {
        let wasClosed = isClosed.withLock { closed in defer { closed = true }; return closed }
        guard !wasClosed else { return }
        socket.shutdown()
        if !consumer.isEmpty { try? jetStream.deleteConsumer(stream: stream, durable: consumer) }
    }

    /// Hands up to `limit` messages to `body` in stream order, lent in place (valid only
    /// inside the call): waits at most `timeout` for the first, then takes only what has
    /// already arrived. Returns how many were handed over (0: none arrived in time).
    public func read(limit: Int, timeout: Duration, _ body: (OrderedConsumer.BorrowedMessage) throws -> Void) throws -> Int {
        guard limit > 0 else { return 0 }
        let deadline = ContinuousClock.now + timeout
        var handed = 0
        while handed < limit {
            while handed < limit, let frame = try socket.nextFrame() {
                if try handle(frame, body) { handed += 1 }
            }
            guard handed < limit else { break }
            let wait = handed == 0 ? max(.zero, deadline - .now) : .zero
            guard try socket.receive(waiting: wait) else { break }
        }
        if handed == 0, ContinuousClock.now - socket.lastReceive > Self.heartbeat * 3 {
            throw NATSError.timeout(operation: "\(description): no heartbeat for \(Self.heartbeat * 3)")
        }
        return handed
    }

    /// True when the frame was a message handed to `body`.
    private func handle(_ frame: ServerFrame, _ body: (OrderedConsumer.BorrowedMessage) throws -> Void) throws -> Bool {
        let bytes = socket.bytes
        switch frame {
        case .message(let message):
            if let headers = message.headers.map({ UnsafeBufferPointer(rebasing: bytes[$0]) }), HeaderBlock.status(headers) != nil {
                try control(message, headers: headers, bytes)
                return false
            }
            guard let reply = message.reply, let ack = JetStreamAckSubject(UnsafeBufferPointer(rebasing: bytes[reply])) else {
                throw NATSError.malformedResponse(operation: description, reason: "a message without a JetStream ack subject")
            }
            guard ack.consumerSequence == nextConsumerSequence else {
                throw NATSError.failed(operation: description, status: "delivery \(ack.consumerSequence) came where \(nextConsumerSequence) was due")
            }
            nextConsumerSequence += 1
            try body(OrderedConsumer.BorrowedMessage(subject: UnsafeBufferPointer(rebasing: bytes[message.subject]), payload: UnsafeBufferPointer(rebasing: bytes[message.payload]),
                                                     streamSequence: ack.streamSequence, numPending: ack.numPending))
            return true
        case .ping:
            try send(ProtocolSocket.pong)
        case .error(let range):
            throw NATSError.failed(operation: description, status: "server error \(String(decoding: bytes[range], as: UTF8.self))")
        case .pong, .ok, .info:
            break
        }
        return false
    }

    /// A status message: flow control (answered on its reply subject) or an idle heartbeat
    /// (which names the last delivery, and a stalled consumer's flow-control subject).
    private func control(_ message: ServerMessage, headers: UnsafeBufferPointer<UInt8>, _ bytes: UnsafeBufferPointer<UInt8>) throws {
        if let reply = message.reply, !reply.isEmpty {
            try send(Array("PUB ".utf8) + Array(bytes[reply]) + Array(" 0\r\n\r\n".utf8))
            flowControlAnswers += 1
            return
        }
        if let stalled = HeaderBlock.value("Nats-Consumer-Stalled", in: headers), !stalled.isEmpty {
            try send(Array("PUB \(stalled) 0\r\n\r\n".utf8))
            flowControlAnswers += 1
        }
        if let last = HeaderBlock.value("Nats-Last-Consumer", in: headers).flatMap(UInt64.init), last != nextConsumerSequence - 1 {
            throw NATSError.failed(operation: description, status: "the heartbeat names delivery \(last), the last one read was \(nextConsumerSequence - 1)")
        }
    }

    private func send(_ bytes: [UInt8]) throws {
        try socket.send(bytes)
    }
}

/// A stream reader that lends messages in order: `OrderedConsumer` and `StreamScan`.
public protocol OrderedStreamReader: AnyObject, Sendable {
    func read(limit: Int, timeout: Duration, _ body: (OrderedConsumer.BorrowedMessage) throws -> Void) throws -> Int
    func close()
}

extension OrderedConsumer: OrderedStreamReader {}

/// Host, port and URL credentials of `nats://[user[:password]@]host[:port]`.
struct ScanEndpoint: Equatable {
    var host: String
    var port: UInt16
    var user: String?
    var password: String?

    init(host: String, port: UInt16, user: String?, password: String?) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
    }

    /// `purpose` names the path in errors.
    init(url: String, purpose: String = "stream scan") throws {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") {
            let name = rest[..<scheme.lowerBound].lowercased()
            guard name == "nats" else { throw NATSError.unsupported("\(purpose) over \(name)://") }
            rest = rest[scheme.upperBound...]
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon]).removingPercentEncoding ?? String(credentials[..<colon])
                password = String(credentials[credentials.index(after: colon)...]).removingPercentEncoding
            } else {
                user = String(credentials).removingPercentEncoding ?? String(credentials)
            }
            rest = rest[rest.index(after: at)...]
        }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var portText: Substring = "4222"
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw NATSError.invalidArgument("bad NATS URL host in \(NATSConnection.redacted(url))") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            portText = rest[rest.index(after: colon)...]
        } else {
            host = String(rest)
        }
        guard !host.isEmpty, let port = UInt16(portText) else { throw NATSError.invalidArgument("bad NATS URL \(NATSConnection.redacted(url))") }
        self.port = port
    }
}

/// The few socket calls a scan needs, each bounded in time.
enum ScanSocket {
    /// A non-blocking TCP socket connected to `host:port` within `timeout`.
    static func connect(host: String, port: UInt16, timeout: Duration, what: String) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let list else { throw NATSError.connect(url: "\(host):\(port)", status: String(cString: gai_strerror(resolved))) }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let address = entry {
            entry = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 { return fd }
            if errno == EINPROGRESS, (try? wait(fd, for: Int16(POLLOUT), within: timeout, what: what)) == true {
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error == 0 { return fd }
                lastError = String(cString: strerror(error))
            } else {
                lastError = errno == EINPROGRESS ? "timed out after \(timeout)" : String(cString: strerror(errno))
            }
            Glibc.close(fd)
        }
        throw NATSError.connect(url: "\(host):\(port)", status: lastError)
    }

    /// True when `fd` is ready for `events` within `timeout`; throws on a socket error.
    static func wait(_ fd: Int32, for events: Int16, within timeout: Duration, what: String) throws -> Bool {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        let milliseconds = Int32(clamping: timeout.components.seconds * 1_000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while true {
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 { throw NATSError.failed(operation: what, status: String(cString: strerror(errno))) }
            if ready == 0 { return false }
            if entry.revents & Int16(POLLNVAL) != 0 { throw NATSError.connectionClosed(operation: what) }
            return true  // POLLHUP/POLLERR show as the next recv's 0 or error
        }
    }

    /// Writes all of `bytes` within `timeout`.
    static func send(_ fd: Int32, _ bytes: [UInt8], within timeout: Duration, what: String) throws {
        let deadline = ContinuousClock.now + timeout
        var sent = 0
        try bytes.withUnsafeBytes { raw in
            while sent < raw.count {
                let count = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if count > 0 { sent += count; continue }
                guard count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else {
                    throw NATSError.connectionClosed(operation: "\(what): \(String(cString: strerror(errno)))")
                }
                let left = deadline - .now
                guard left > .zero, try wait(fd, for: Int16(POLLOUT), within: left, what: what) else {
                    throw NATSError.timeout(operation: "\(what): writing \(bytes.count) bytes within \(timeout)")
                }
            }
        }
    }
}
