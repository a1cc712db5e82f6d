internal import CHiredis  // never re-exported: no C type reaches RedisClient's users
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one place that touches hiredis: owns a blocking `redisContext`, turns every C status
/// into a `RedisError` and every `redisReply` into a `RedisReply` (freeing it at once).
///
/// Not thread-safe; each owner (`RedisConnection` under its lock, the subscriber thread)
/// uses it from one thread at a time. Once `isBroken` is true hiredis has given up on the
/// context (it may hold a half-read reply), so owners discard it and connect a new one.
final class HiredisContext: @unchecked Sendable {  // crosses threads only inside its one owner (a mutex or a thread)
    private let context: UnsafeMutablePointer<redisContext>
    let endpoint: RedisEndpoint
    private let timeout: Duration

    /// Connects within `timeout`, sets `timeout` as the socket read/write timeout, then
    /// authenticates and selects the database when the endpoint asks for it.
    init(endpoint: RedisEndpoint, timeout: Duration) throws(RedisError) {
        Self.ignoreSIGPIPE
        self.endpoint = endpoint
        self.timeout = timeout
        let tv = Self.makeTimeval(timeout)
        guard let context = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw .connect(address: endpoint.address, reason: "hiredis could not allocate a context")
        }
        if context.pointee.err != 0 {
            let reason = Self.describe(context, savedErrno: errno, timeout: timeout)
            redisFree(context)
            throw .connect(address: endpoint.address, reason: reason)
        }
        if redisSetTimeout(context, tv) != REDIS_OK {
            let reason = Self.describe(context, savedErrno: errno, timeout: timeout)
            redisFree(context)
            throw .connect(address: endpoint.address, reason: "cannot set socket timeout: \(reason)")
        }
        #if canImport(Darwin)
        var on: Int32 = 1
        setsockopt(context.pointee.fd, SOL_SOCKET, SO_NOSIGPIPE, &on, socklen_t(MemoryLayout<Int32>.size))
        #endif
        self.context = context
        try handshake()
    }

    /// hiredis sends with `write()`, which raises SIGPIPE (killing the process) when the
    /// server has reset the connection. Darwin has a per-socket opt-out (above); on Linux the
    /// only remedy is to ignore the signal, which is done once, and only if nobody installed
    /// a handler. `write` then fails with EPIPE and the command throws `RedisError.io`.
    private static let ignoreSIGPIPE: Void = {
        #if os(Linux)
        var current = sigaction()
        guard sigaction(SIGPIPE, nil, &current) == 0 else { return }
        if current.__sigaction_handler.sa_handler == nil && current.sa_flags & SA_SIGINFO == 0 {
            signal(SIGPIPE, SIG_IGN)
        }
        #endif
    }()

    deinit { redisFree(context) }

    /// True once hiredis reported a connection-level error; the context is unusable.
    var isBroken: Bool { context.pointee.err != 0 }

    /// The socket, for `poll`.
    var fileDescriptor: Int32 { context.pointee.fd }

    // MARK: Blocking request/reply (RedisConnection)

    /// Sends one command and waits for its reply (error replies are returned, not thrown).
    func command<Argument: Collection<UInt8>>(_ arguments: [Argument], name: String) throws(RedisError) -> RedisReply {
        let raw = Self.withArgv(arguments) { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) }
        let savedErrno = errno
        guard let raw else { throw connectionError(name, savedErrno: savedErrno) }
        return try Self.take(raw, command: name)
    }

    /// Queues one command in hiredis's output buffer; nothing is sent yet.
    func append<Argument: Collection<UInt8>>(_ arguments: [Argument], name: String) throws(RedisError) {
        let status = Self.withArgv(arguments) { argc, argv, lengths in redisAppendCommandArgv(context, argc, argv, lengths) }
        if status != REDIS_OK { throw connectionError(name, savedErrno: errno) }
    }

    /// Flushes queued commands if any, then blocks (up to the socket timeout) for the next reply.
    func nextReply(name: String) throws(RedisError) -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        let status = redisGetReply(context, &raw)
        let savedErrno = errno
        guard status == REDIS_OK, let raw else { throw connectionError(name, savedErrno: savedErrno) }
        return try Self.take(raw, command: name)
    }

    // MARK: Polled reading (RedisSubscriber)

    /// Writes everything queued by `append` (blocking, bounded by the socket timeout).
    func flush(name: String) throws(RedisError) {
        var done: Int32 = 0
        while done == 0 {
            if redisBufferWrite(context, &done) != REDIS_OK { throw connectionError(name, savedErrno: errno) }
        }
    }

    /// A reply already buffered, or else waits up to `milliseconds` for the socket to become
    /// readable, reads once, and returns a reply if that completed one; nil when none is
    /// complete yet. Never blocks in `read`, so a timeout leaves the context valid.
    func pollReply(waitingAtMost milliseconds: Int32, name: String) throws(RedisError) -> RedisReply? {
        if let reply = try bufferedReply(name: name) { return reply }
        var descriptor = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready < 0 {
            if errno == EINTR { return nil }
            throw .io(command: name, reason: "poll failed: \(String(cString: strerror(errno)))")
        }
        if ready == 0 { return nil }
        if redisBufferRead(context) != REDIS_OK { throw connectionError(name, savedErrno: errno) }
        return try bufferedReply(name: name)
    }

    private func bufferedReply(name: String) throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        if redisGetReplyFromReader(context, &raw) != REDIS_OK { throw connectionError(name, savedErrno: errno) }
        guard let raw else { return nil }
        return try Self.take(raw, command: name)
    }

    // MARK: Handshake

    private func handshake() throws(RedisError) {
        do throws(RedisError) {
            if let password = endpoint.password {
                let arguments = endpoint.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]
                if case .error(let message) = try command(arguments.map(\.utf8), name: "AUTH") {
                    throw RedisError.server(command: "AUTH", message: message)
                }
            }
            if endpoint.database != 0 {
                if case .error(let message) = try command(["SELECT", "\(endpoint.database)"].map(\.utf8), name: "SELECT") {
                    throw RedisError.server(command: "SELECT \(endpoint.database)", message: message)
                }
            }
        } catch {
            throw .connect(address: endpoint.address, reason: error.description)
        }
    }

    // MARK: Errors

    private func connectionError(_ name: String, savedErrno: Int32) -> RedisError {
        .io(command: name, reason: Self.describe(context, savedErrno: savedErrno, timeout: timeout))
    }

    /// hiredis's error text, except that a socket timeout (EAGAIN on a blocking socket,
    /// ETIMEDOUT while connecting) says how long was waited.
    private static func describe(_ context: UnsafeMutablePointer<redisContext>, savedErrno: Int32, timeout: Duration) -> String {
        let text = withUnsafeBytes(of: context.pointee.errstr) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        let isTimeout = context.pointee.err == REDIS_ERR_IO
            && (savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || savedErrno == ETIMEDOUT)
        if isTimeout { return "timed out after \(milliseconds(timeout)) ms" }
        if context.pointee.err == 0 { return "unknown hiredis error" }
        return text.isEmpty ? "hiredis error \(context.pointee.err)" : text
    }

    // MARK: C plumbing

    /// Copies `arguments` into one buffer and calls `body` with hiredis's argc/argv/argvlen,
    /// so every argument is binary-safe (hiredis reads lengths, not NUL terminators).
    private static func withArgv<Argument: Collection<UInt8>, Result>(
        _ arguments: [Argument],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> Result
    ) -> Result {
        let lengths = arguments.map(\.count)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, lengths.reduce(0, +)), alignment: 1)
        defer { storage.deallocate() }
        var pointers: [UnsafePointer<CChar>?] = []
        pointers.reserveCapacity(arguments.count)
        var offset = 0
        for argument in arguments {
            let start = storage.baseAddress! + offset
            UnsafeMutableRawBufferPointer(rebasing: storage[offset...]).copyBytes(from: argument)
            pointers.append(UnsafePointer(start.assumingMemoryBound(to: CChar.self)))
            offset += argument.count
        }
        return pointers.withUnsafeMutableBufferPointer { argv in
            lengths.withUnsafeBufferPointer { argvlen in
                body(Int32(arguments.count), argv.baseAddress!, argvlen.baseAddress!)
            }
        }
    }

    /// Converts and frees a reply returned by hiredis.
    private static func take(_ raw: UnsafeMutableRawPointer, command: String) throws(RedisError) -> RedisReply {
        defer { freeReplyObject(raw) }
        return try convert(raw.assumingMemoryBound(to: redisReply.self), command: command)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>, command: String) throws(RedisError) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .string(bytes(value.str, value.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                guard let element = value.element?[index] else {
                    throw .unexpectedReply(command: command, expected: "array element", got: "missing element \(index)")
                }
                elements.append(try convert(element, command: command))
            }
            return .array(elements)
        default:
            throw .unexpectedReply(command: command, expected: "a RESP2 reply", got: "hiredis reply type \(value.type)")
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// `duration` as a `timeval`, at least 1 ms: hiredis treats zero as "no timeout".
    static func makeTimeval(_ duration: Duration) -> timeval {
        let clamped = max(duration, .milliseconds(1))
        let (seconds, attoseconds) = clamped.components
        return timeval(tv_sec: .init(seconds), tv_usec: .init(attoseconds / 1_000_000_000_000))
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}
