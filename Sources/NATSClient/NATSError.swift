/// Everything that can go wrong in `NATSClient`. Each case says what was attempted and carries
/// the context an operator needs (URL, subject, stream, the nats.c status text or the
/// JetStream API's own error).
public enum NATSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// No server in `url` accepted the connection within the connect timeout.
    case connect(url: String, status: String)
    /// `operation` did not complete before its timeout.
    case timeout(operation: String)
    /// A request found nobody subscribed to `subject` (for JetStream: no stream captures it,
    /// or JetStream is not enabled on the server).
    case noResponders(subject: String)
    /// The JetStream API refused `operation`. `code` is the JetStream API error code
    /// (`err_code`, e.g. 10059 "stream not found") when the server sent one, else the
    /// HTTP-like status code (e.g. 503).
    case jetStream(operation: String, code: Int, description: String)
    /// The caller passed something the client refuses before talking to the server.
    case invalidArgument(String)
    /// The connection is closed (by `close()`, `drain`, or after giving up reconnecting).
    case connectionClosed(operation: String)
    /// The server answered `operation` with something this client cannot decode.
    case malformedResponse(operation: String, reason: String)
    /// The client dropped messages of `operation` because its reader fell behind. For an
    /// ordered consumer this loses them for good (nats.c advances past dropped messages), so
    /// the reader must start again from the last sequence it handled.
    case messagesDropped(operation: String)
    /// Any other nats.c failure of `operation`, with the library's status text.
    case failed(operation: String, status: String)
    /// What was asked needs something this client does not do (`what` says which).
    case unsupported(String)

    public var description: String {
        switch self {
        case .connect(let url, let status):
            "cannot connect to NATS at \(NATSConnection.redacted(url)): \(status)"
        case .timeout(let operation):
            "timed out: \(operation)"
        case .noResponders(let subject):
            "no responders on \(subject)"
        case .jetStream(let operation, let code, let description):
            "JetStream refused \(operation): \(description) (code \(code))"
        case .invalidArgument(let what):
            "invalid argument: \(what)"
        case .connectionClosed(let operation):
            "connection closed: \(operation)"
        case .malformedResponse(let operation, let reason):
            "malformed response to \(operation): \(reason)"
        case .messagesDropped(let operation):
            "\(operation) dropped messages: the reader fell behind"
        case .failed(let operation, let status):
            "\(operation) failed: \(status)"
        case .unsupported(let what):
            "not supported: \(what)"
        }
    }
}
