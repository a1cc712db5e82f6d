/// Everything that can go wrong in `RedisClient`. Each case says what was attempted and
/// carries the context an operator needs: the address, the command (name and key, never the
/// values), hiredis's error text or Redis's own error message.
public enum RedisError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The URL is not `redis://[[user]:password@]host[:port][/db]`; the text says why.
    case invalidURL(String)
    /// No connection to `address` (host:port) could be made, or the handshake after it
    /// (`AUTH`, `SELECT`) failed.
    case connect(address: String, reason: String)
    /// The connection failed while sending `command` or waiting for its reply: the server
    /// closed it, the socket broke, or no reply came in time ("timed out after N ms").
    /// The connection is discarded; `RedisConnection` reconnects on the next command.
    case io(command: String, reason: String)
    /// Redis answered `command` with an error reply (`-ERR …`, `-WRONGTYPE …`); `message` is
    /// Redis's text.
    case server(command: String, message: String)
    /// Redis answered `command` with a reply of a shape the typed helper does not accept.
    case unexpectedReply(command: String, expected: String, got: String)
    /// The connection was closed by `close()`.
    case closed

    public var description: String {
        switch self {
        case .invalidURL(let reason):
            "invalid Redis URL: \(reason)"
        case .connect(let address, let reason):
            "cannot connect to Redis at \(address): \(reason)"
        case .io(let command, let reason):
            "Redis connection failed during \(command): \(reason)"
        case .server(let command, let message):
            "Redis refused \(command): \(message)"
        case .unexpectedReply(let command, let expected, let got):
            "unexpected Redis reply to \(command): expected \(expected), got \(got)"
        case .closed:
            "Redis connection is closed"
        }
    }
}
