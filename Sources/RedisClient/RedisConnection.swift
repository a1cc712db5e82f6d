import Synchronization

/// One blocking Redis connection (hiredis's synchronous API) with typed helpers for the
/// commands Switchboard uses.
///
/// Meant to be used from one thread at a time (one owner, like the presence poller). Calls
/// from several threads are serialized by an internal mutex, so misuse costs latency, not
/// memory safety.
///
/// Timeouts: `timeout` bounds the TCP connect and, as the socket's read/write timeout, each
/// command's wait for its reply (`RedisError.io` "timed out after N ms").
///
/// Reconnection is lazy: a connection-level failure (server gone, socket error, timeout)
/// throws `RedisError.io` for the command that hit it and discards the connection, because
/// hiredis cannot reuse a context after an error and a late reply would otherwise be taken
/// for the next command's. The next call makes one connect attempt (throwing
/// `RedisError.connect` if it fails) and then runs normally. A failed command is never
/// retried: it may or may not have been executed.
///
/// On Linux the first connection sets SIGPIPE to ignored unless the process installed a
/// handler: hiredis writes with `write()`, and a reset connection must become an error,
/// not kill the process.
public final class RedisConnection: Sendable {
    private let endpoint: RedisEndpoint
    private let timeout: Duration
    private let state: Mutex<State>

    private struct State {
        /// nil after a connection-level error, until the next command reconnects.
        var context: HiredisContext?
        /// Set by `close()`. (Dropping the last reference also closes: the context's deinit frees it.)
        var isClosed = false
    }

    /// Connects to `url` (`redis://host:port[/db]`, a password as `redis://:pw@host:port`,
    /// an ACL user as `redis://user:pw@host:port`), authenticating and selecting the database.
    public init(url: String, timeout: Duration = .seconds(2)) throws {
        endpoint = try RedisEndpoint(parsing: url)
        self.timeout = timeout
        state = Mutex(State(context: try HiredisContext(endpoint: endpoint, timeout: timeout)))
    }

    /// Closes the connection; later calls throw `RedisError.closed`. Idempotent.
    public func close() {
        state.withLock { state in
            state.isClosed = true
            state.context = nil
        }
    }

    // MARK: Generic commands

    /// Sends one command (arguments are UTF-8, binary-safe) and returns its reply.
    /// An error reply throws `RedisError.server` with Redis's message.
    @discardableResult
    public func command(_ arguments: [String]) throws -> RedisReply {
        try run(arguments.map(\.utf8), name: Self.name(arguments.map(\.utf8)))
    }

    /// Sends one command whose arguments are arbitrary bytes and returns its reply.
    /// An error reply throws `RedisError.server` with Redis's message.
    @discardableResult
    public func command(bytes arguments: [[UInt8]]) throws -> RedisReply {
        try run(arguments, name: Self.name(arguments))
    }

    /// Sends all `commands` at once, then reads their replies: one round trip instead of N.
    /// Replies come back in order; error replies are returned in place as `.error`, not thrown.
    /// A connection-level failure throws `RedisError.io` (some of the commands may have run).
    public func pipeline(_ commands: [[String]]) throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        return try withContext(name: "pipeline of \(commands.count) commands") { redis throws(RedisError) in
            for command in commands {
                let arguments = command.map(\.utf8)
                try redis.append(arguments, name: Self.name(arguments))
            }
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            for command in commands {
                replies.append(try redis.nextReply(name: Self.name(command.map(\.utf8))))
            }
            return replies
        }
    }

    // MARK: Typed helpers

    /// `HSET key field value …`. Does nothing for no pairs.
    public func hset(_ key: String, _ pairs: [(String, String)]) throws {
        guard !pairs.isEmpty else { return }
        var arguments = ["HSET", key]
        arguments.reserveCapacity(2 + 2 * pairs.count)
        for (field, value) in pairs { arguments += [field, value] }
        _ = try Self.expectInteger(command(arguments), command: "HSET \(key)")
    }

    /// `HDEL key field …`. Does nothing for no fields.
    public func hdel(_ key: String, _ fields: [String]) throws {
        guard !fields.isEmpty else { return }
        _ = try Self.expectInteger(command(["HDEL", key] + fields), command: "HDEL \(key)")
    }

    /// One `HSCAN key cursor COUNT count` page. Start with cursor 0 and repeat with `next`
    /// until it is 0; a field may appear in more than one page (Redis's guarantee is "at
    /// least once"), so collect into a dictionary.
    public func hscan(_ key: String, cursor: UInt64, count: Int) throws -> (next: UInt64, pairs: [(String, String)]) {
        let name = "HSCAN \(key)"
        let reply = try command(["HSCAN", key, "\(cursor)", "COUNT", "\(max(1, count))"])
        guard case .array(let parts) = reply, parts.count == 2,
              let cursorText = parts[0].text, let next = UInt64(cursorText),
              case .array(let flat) = parts[1] else {
            throw RedisError.unexpectedReply(command: name, expected: "[cursor, [field, value, …]]", got: reply.summary)
        }
        return (next, try Self.pairs(flat, command: name))
    }

    /// `ZADD key score member`; returns the number of members added (0 when only the score changed).
    @discardableResult
    public func zadd(_ key: String, score: Double, member: String) throws -> Int64 {
        try Self.expectInteger(command(["ZADD", key, Self.scoreArgument(score), member]), command: "ZADD \(key)")
    }

    /// `ZREM key member`.
    public func zrem(_ key: String, member: String) throws {
        _ = try Self.expectInteger(command(["ZREM", key, member]), command: "ZREM \(key)")
    }

    /// `ZRANGEBYSCORE key min max WITHSCORES`, inclusive bounds, lowest score first.
    /// `-.infinity` / `.infinity` are sent as `-inf` / `+inf`.
    public func zrangeByScore(_ key: String, min: Double, max: Double) throws -> [(member: String, score: Double)] {
        let name = "ZRANGEBYSCORE \(key)"
        let reply = try command(["ZRANGEBYSCORE", key, Self.scoreArgument(min), Self.scoreArgument(max), "WITHSCORES"])
        return try Self.scoredMembers(reply, command: name)
    }

    /// `INCR key`; returns the new value.
    public func incr(_ key: String) throws -> Int64 {
        try Self.expectInteger(command(["INCR", key]), command: "INCR \(key)")
    }

    /// `PUBLISH channel payload`; returns how many subscribers received it.
    @discardableResult
    public func publish(_ channel: String, _ payload: [UInt8]) throws -> Int64 {
        try Self.expectInteger(command(bytes: [Array("PUBLISH".utf8), Array(channel.utf8), payload]), command: "PUBLISH \(channel)")
    }

    // MARK: Reply decoding (internal for tests)

    static func expectInteger(_ reply: RedisReply, command: String) throws(RedisError) -> Int64 {
        guard case .integer(let value) = reply else {
            throw .unexpectedReply(command: command, expected: "integer", got: reply.summary)
        }
        return value
    }

    /// A flat `[field, value, field, value, …]` array as text pairs.
    static func pairs(_ flat: [RedisReply], command: String) throws(RedisError) -> [(String, String)] {
        guard flat.count.isMultiple(of: 2) else {
            throw .unexpectedReply(command: command, expected: "an even number of elements", got: "\(flat.count) elements")
        }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(flat.count / 2)
        var index = 0
        while index < flat.count {
            guard let field = flat[index].text, let value = flat[index + 1].text else {
                throw .unexpectedReply(command: command, expected: "UTF-8 strings", got: "\(flat[index].summary), \(flat[index + 1].summary)")
            }
            pairs.append((field, value))
            index += 2
        }
        return pairs
    }

    /// A `WITHSCORES` reply: `[member, score, …]` with scores as decimal text (or `inf`).
    static func scoredMembers(_ reply: RedisReply, command: String) throws(RedisError) -> [(member: String, score: Double)] {
        guard case .array(let flat) = reply else {
            throw .unexpectedReply(command: command, expected: "array of member, score", got: reply.summary)
        }
        let pairs = try pairs(flat, command: command)
        var result: [(member: String, score: Double)] = []
        result.reserveCapacity(pairs.count)
        for (member, scoreText) in pairs {
            guard let score = Double(scoreText) else {
                throw .unexpectedReply(command: command, expected: "a numeric score", got: "\"\(scoreText.prefix(40))\"")
            }
            result.append((member, score))
        }
        return result
    }

    /// Redis's spelling of a score: `+inf`/`-inf` for the infinities, else the shortest
    /// decimal that round-trips (NaN is sent as `nan`, which Redis rejects).
    static func scoreArgument(_ score: Double) -> String {
        if score == .infinity { return "+inf" }
        if score == -.infinity { return "-inf" }
        return "\(score)"
    }

    // MARK: Plumbing

    private func run<Argument: Collection<UInt8>>(_ arguments: [Argument], name: String) throws(RedisError) -> RedisReply {
        let reply = try withContext(name: name) { redis throws(RedisError) in try redis.command(arguments, name: name) }
        if case .error(let message) = reply { throw .server(command: name, message: message) }
        return reply
    }

    /// Runs `body` on the live context under the lock, connecting first if the previous one
    /// broke, and discarding the context if `body` broke it.
    private func withContext<Result: Sendable>(name: String, _ body: (HiredisContext) throws(RedisError) -> Result) throws(RedisError) -> Result {
        try state.withLock { (state) throws(RedisError) -> Result in
            guard !state.isClosed else { throw .closed }
            let redis: HiredisContext
            if let context = state.context {
                redis = context
            } else {
                redis = try HiredisContext(endpoint: endpoint, timeout: timeout)
                state.context = redis
            }
            do throws(RedisError) {
                return try body(redis)
            } catch {
                if redis.isBroken { state.context = nil }
                throw error
            }
        }
    }

    /// The command name and its key, for error messages; never the values, which may be
    /// large or binary.
    static func name<Argument: Collection<UInt8>>(_ arguments: [Argument]) -> String {
        arguments.prefix(2).map { argument in
            let text = String(decoding: argument.prefix(64), as: UTF8.self)
            return argument.count > 64 ? text + "…" : text
        }.joined(separator: " ")
    }
}
