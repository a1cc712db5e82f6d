import CNATS
import Foundation

/// A JetStream context (nats.c `jsCtx`) over a `NATSConnection`: publishing with acks,
/// stream management, and the two consumer shapes Switchboard uses (durable pull, ordered).
///
/// Every call waits at most the context's `timeout` for the server. Safe to use from any
/// thread, except that `deinit` must not race a call in progress (ownership guarantees it).
public final class JetStream: Sendable {
    /// What `applyStream` did.
    public enum StreamApplyResult: Sendable, Equatable, CustomStringConvertible {
        case created, updated, unchanged

        public var description: String {
            switch self {
            case .created: "created"
            case .updated: "updated"
            case .unchanged: "unchanged"
            }
        }
    }

    /// The server's acknowledgement of a stored message.
    public struct PublishAck: Sendable, Equatable {
        public var stream: String
        public var sequence: UInt64
        /// True when the server had already stored a message with the same `Nats-Msg-Id`
        /// inside the stream's duplicate window (nothing new was stored; `sequence` is the original's).
        public var duplicate: Bool

        public init(stream: String, sequence: UInt64, duplicate: Bool) {
            self.stream = stream
            self.sequence = sequence
            self.duplicate = duplicate
        }
    }

    /// A message read directly from a stream (not through a consumer).
    public struct StoredMessage: Sendable {
        public var subject: String
        public var sequence: UInt64
        public var payload: [UInt8]
        public var headers: NATSHeaders
        /// When the stream stored it, in nanoseconds since the Unix epoch.
        public var timestampNs: Int64

        public init(subject: String, sequence: UInt64, payload: [UInt8], headers: NATSHeaders = NATSHeaders(), timestampNs: Int64 = 0) {
            self.subject = subject
            self.sequence = sequence
            self.payload = payload
            self.headers = headers
            self.timestampNs = timestampNs
        }
    }

    /// A stream's counters.
    public struct StreamState: Sendable, Equatable {
        public var messages: UInt64
        public var bytes: UInt64
        public var firstSequence: UInt64
        public var lastSequence: UInt64
        /// When the stream was created, in nanoseconds since the Unix epoch: a stream created
        /// anew under the same name numbers its messages from 1 again.
        public var createdNs: Int64

        public init(messages: UInt64, bytes: UInt64, firstSequence: UInt64, lastSequence: UInt64, createdNs: Int64 = 0) {
            self.messages = messages
            self.bytes = bytes
            self.firstSequence = firstSequence
            self.lastSequence = lastSequence
            self.createdNs = createdNs
        }
    }

    /// The connection is kept alive as long as the context.
    public let connection: NATSConnection
    /// Bound on each JetStream API call.
    public let timeout: Duration
    private let cContext: CHandle
    /// The `jsCtx*`; valid until deinit.
    var context: OpaquePointer { cContext.pointer }
    private let apiPrefix = "$JS.API"
    let asyncFailureID: UInt

    init(connection: NATSConnection, timeout: Duration, maxPendingAsyncPublishes: Int) throws {
        guard timeout > .zero else { throw NATSError.invalidArgument("JetStream timeout must be positive") }
        guard maxPendingAsyncPublishes > 0 else { throw NATSError.invalidArgument("maxPendingAsyncPublishes must be positive") }
        self.connection = connection
        self.timeout = timeout
        asyncFailureID = asyncPublishFailures.register()
        var options = jsOptions()
        jsOptions_Init(&options)
        options.Wait = timeout.natsTimeoutMilliseconds
        options.PublishAsync.MaxPending = Int64(maxPendingAsyncPublishes)
        // A publisher at the in-flight bound waits for acks rather than failing at once.
        options.PublishAsync.StallWait = timeout.natsTimeoutMilliseconds
        options.PublishAsync.ErrHandler = recordAsyncPublishFailure
        options.PublishAsync.ErrHandlerClosure = UnsafeMutableRawPointer(bitPattern: asyncFailureID)
        var context: OpaquePointer?
        let status = natsConnection_JetStream(&context, connection.handle, &options)
        guard status == NATS_OK, let context else {
            asyncPublishFailures.unregister(asyncFailureID)
            throw coreError(status, "creating a JetStream context")
        }
        cContext = CHandle(context)
    }

    deinit {
        jsCtx_Destroy(context)
        asyncPublishFailures.unregister(asyncFailureID)
    }

    /// Options for one API call, with the context's wait.
    func callOptions() -> jsOptions {
        var options = jsOptions()
        jsOptions_Init(&options)
        options.Wait = timeout.natsTimeoutMilliseconds
        return options
    }


    // MARK: Raw API

    /// One JetStream API request (`$JS.API.<suffix>`) with a JSON reply; the reply's
    /// `error` object becomes `NATSError.jetStream`. `timeout` (default: the context's) bounds it.
    func apiRequest(_ suffix: String, payload: [UInt8], operation: String, timeout: Duration? = nil) throws -> [String: JSONValue] {
        let timeout = timeout ?? self.timeout
        let reply: NATSMessage
        do {
            reply = try connection.request("\(apiPrefix).\(suffix)", payload: payload, timeout: timeout)
        } catch NATSError.noResponders {
            throw NATSError.jetStream(operation: operation, code: 503, description: "JetStream is not enabled on the server (no responders)")
        } catch NATSError.timeout {
            throw NATSError.timeout(operation: "\(operation) within \(timeout)")
        }
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(reply.payload)) else {
            throw NATSError.malformedResponse(operation: operation, reason: "not a JSON object: \(String(decoding: reply.payload.prefix(200), as: UTF8.self))")
        }
        if case .object(let error)? = object["error"] {
            let errCode = error["err_code"]?.intValue ?? 0
            let httpCode = error["code"]?.intValue ?? 0
            let description: String
            if case .string(let text)? = error["description"] { description = text } else { description = "unknown error" }
            throw NATSError.jetStream(operation: operation, code: errCode != 0 ? errCode : httpCode, description: description)
        }
        return object
    }

    /// Stream names become subject tokens of the API; refuse what would change the subject.
    static func validateStreamName(_ name: String, what: String = "stream name") throws {
        let bad = name.isEmpty || name.utf8.contains {
            $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: ">") || $0 <= 32 || $0 == 127
        }
        if bad { throw NATSError.invalidArgument("\(what) \"\(name)\" is empty or contains '.', '*', '>' or whitespace") }
    }
}
