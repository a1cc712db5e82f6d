import CNATS
import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One connection to a NATS server (or cluster), owning a nats.c `natsConnection`.
///
/// Every method is safe to call from any thread (nats.c locks internally). Every call that
/// waits on the network takes a timeout. `close()` is idempotent; `deinit` closes and frees
/// the C connection. Subscriptions and JetStream contexts made from this connection stay
/// valid memory-wise after it is closed (nats.c reference-counts them); their calls then fail
/// with `NATSError.connectionClosed`.
public final class NATSConnection: Sendable {
    /// How to connect and how to behave when the connection drops.
    public struct Options: Sendable {
        /// One URL or several, comma-separated (`nats://a:4222,nats://b:4222`).
        public var url: String
        /// The connection name the server shows in its monitoring.
        public var name: String
        /// Bounds each connect attempt (TCP connect plus the INFO/CONNECT handshake).
        public var connectTimeout: Duration
        /// Reconnect attempts per server after a disconnect; -1 retries forever, 0 never reconnects.
        public var maxReconnects: Int
        /// Pause between two reconnect attempts to the same server.
        public var reconnectWait: Duration
        /// Interval of client PINGs; two missed PONGs mark the connection stale.
        public var pingInterval: Duration
        /// Per-subscription limit on bytes delivered but not yet handled; past it, messages
        /// are dropped and the subscription is a slow consumer (defends the process's memory
        /// against a producer faster than the handler).
        public var maxPendingBytes: Int
        /// Per-subscription limit on messages delivered but not yet handled (same defence).
        public var maxPendingMessages: Int
        /// Bytes buffered for publishing while reconnecting; past it, publish fails.
        public var reconnectBufferBytes: Int
        /// Told when the connection drops and when it is re-established (on nats.c's callback
        /// thread: keep it short). Core-NATS messages sent to this client in between are lost,
        /// which is what a subscriber may need to react to.
        public var onConnectionEvent: (@Sendable (ConnectionEvent) -> Void)?
        /// TLS towards the servers; nil: plain TCP unless a URL says `tls://`. User and
        /// password (or a token) go in the URL, `nats://user:password@host:4222`.
        public var tls: TLS?
        /// Credentials other than those in the URL (`Authentication`).
        public var authentication: Authentication
        /// Told of errors the server reports after connecting (a permission violation), on
        /// nats.c's callback thread, with the server's words.
        public var onAsyncError: (@Sendable (String) -> Void)?
        /// Every publish (and pull request, ack, PING) is written to the socket by the calling
        /// thread before the call returns. Otherwise nats.c buffers it and wakes its flusher
        /// thread, which waits 1 ms for more before writing: two thread wakes and a millisecond
        /// added to every burst of publishes. A process that publishes what one read produced
        /// in one go (the fan-out) wants this; one that publishes many small messages one by
        /// one from a tight loop pays a write per message with it.
        public var sendAsap: Bool

        public init(
            url: String,
            name: String = "switchboard",
            connectTimeout: Duration = .seconds(5),
            maxReconnects: Int = -1,
            reconnectWait: Duration = .milliseconds(250),
            pingInterval: Duration = .seconds(10),
            maxPendingBytes: Int = 64 * 1024 * 1024,
            maxPendingMessages: Int = 65_536,
            reconnectBufferBytes: Int = 8 * 1024 * 1024,
            onConnectionEvent: (@Sendable (ConnectionEvent) -> Void)? = nil,
            tls: TLS? = nil,
            authentication: Authentication = .init(),
            onAsyncError: (@Sendable (String) -> Void)? = nil,
            sendAsap: Bool = false
        ) {
            self.sendAsap = sendAsap
            self.tls = tls
            self.authentication = authentication
            self.onAsyncError = onAsyncError
            self.url = url
            self.name = name
            self.connectTimeout = connectTimeout
            self.maxReconnects = maxReconnects
            self.reconnectWait = reconnectWait
            self.pingInterval = pingInterval
            self.maxPendingBytes = maxPendingBytes
            self.maxPendingMessages = maxPendingMessages
            self.reconnectBufferBytes = reconnectBufferBytes
            self.onConnectionEvent = onConnectionEvent
        }

        /// TLS settings (nats.c over OpenSSL). The server's certificate is verified against
        /// `caFile` (PEM), else the system's trust store, and its name against the URL's host;
        /// `certFile` and `keyFile` (PEM) present a client certificate, for servers that verify
        /// clients (mutual TLS).
        public struct TLS: Sendable, Equatable {
            public var caFile: String?
            public var certFile: String?
            public var keyFile: String?

            public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
                self.caFile = caFile
                self.certFile = certFile
                self.keyFile = keyFile
            }

            /// TLS when any file is given (the `--nats-tls-*` flags), else nil.
            public static func files(ca: String?, cert: String?, key: String?) -> TLS? {
                ca == nil && cert == nil && key == nil ? nil : TLS(caFile: ca, certFile: cert, keyFile: key)
            }
        }

        /// The URLs of `url`, trimmed, empty entries dropped.
        var servers: [String] {
            url.split(separator: ",").map { String($0.filter { !$0.isWhitespace }) }.filter { !$0.isEmpty }
        }
    }

    public let options: Options

    /// `urls` with the password (or token) of every `user:password@` left out, for logs and
    /// error messages.
    public static func redacted(_ urls: String) -> String {
        urls.split(separator: ",", omittingEmptySubsequences: false).map { url -> String in
            guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].firstIndex(of: "@") else { return String(url) }
            let credentials = url[scheme.upperBound..<at]
            let user = credentials.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
            return url[..<scheme.upperBound] + (credentials.contains(":") ? "\(user):***" : "***") + url[at...]
        }.joined(separator: ",")
    }
    private let cHandle: CHandle
    /// Signalled by nats.c's closed callback, so that `drain` waits for the close without polling.
    private let closed: ClosedSignal
    /// The `natsConnection*`; valid until deinit.
    var handle: OpaquePointer { cHandle.pointer }

    /// Connects, or throws `NATSError.connect` once every server refused or the connect
    /// timeout passed. Never retries a failed first connect in the background.
    public init(options: Options) throws {
        try openLibrary()
        let servers = options.servers
        guard !servers.isEmpty else { throw NATSError.invalidArgument("no NATS URL given") }
        guard options.connectTimeout > .zero else { throw NATSError.invalidArgument("connect timeout must be positive") }
        guard options.maxReconnects >= -1 else { throw NATSError.invalidArgument("maxReconnects must be -1 (forever) or ≥ 0") }
        guard options.maxPendingBytes > 0, options.maxPendingMessages > 0 else {
            throw NATSError.invalidArgument("pending limits must be positive")
        }
        self.options = options

        var opts: OpaquePointer?
        try check(natsOptions_Create(&opts), "creating connection options")
        guard let opts else { throw NATSError.failed(operation: "creating connection options", status: "no options") }
        defer { natsOptions_Destroy(opts) }

        let describe = Self.redacted(options.url)
        func set(_ status: natsStatus, _ what: String) throws {
            if status != NATS_OK { throw NATSError.invalidArgument("\(what) for \(describe): \(statusText(status))") }
        }
        var cServers = servers.map { strdup($0).map { UnsafePointer($0) } }
        defer { for server in cServers { free(UnsafeMutablePointer(mutating: server)) } }
        try set(natsOptions_SetServers(opts, &cServers, Int32(cServers.count)), "server list")
        try set(natsOptions_SetName(opts, options.name), "connection name")
        try set(natsOptions_SetTimeout(opts, options.connectTimeout.natsTimeoutMilliseconds), "connect timeout")
        try set(natsOptions_SetMaxReconnect(opts, Int32(clamping: options.maxReconnects)), "max reconnects")
        try set(natsOptions_SetAllowReconnect(opts, options.maxReconnects != 0), "allow reconnect")
        try set(natsOptions_SetReconnectWait(opts, options.reconnectWait.natsMilliseconds), "reconnect wait")
        try set(natsOptions_SetPingInterval(opts, options.pingInterval.natsTimeoutMilliseconds), "ping interval")
        try set(natsOptions_SetMaxPendingMsgs(opts, Int32(clamping: options.maxPendingMessages)), "max pending messages")
        try set(natsOptions_SetReconnectBufSize(opts, Int32(clamping: options.reconnectBufferBytes)), "reconnect buffer")
        try set(natsOptions_SetRetryOnFailedConnect(opts, false, nil, nil), "retry on failed connect")
        try set(natsOptions_SetSendAsap(opts, options.sendAsap), "send as soon as possible")
        if let tls = options.tls {
            guard (tls.certFile == nil) == (tls.keyFile == nil) else {
                throw NATSError.invalidArgument("a TLS client certificate needs both its certificate and its key file")
            }
            for file in [tls.caFile, tls.certFile, tls.keyFile].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
                throw NATSError.invalidArgument("TLS file '\(file)' cannot be read")
            }
            try set(natsOptions_SetSecure(opts, true), "TLS")
            if let ca = tls.caFile { try set(natsOptions_LoadCATrustedCertificates(opts, ca), "TLS CA certificates from \(ca)") }
            if let cert = tls.certFile, let key = tls.keyFile {
                try set(natsOptions_LoadCertificatesChain(opts, cert, key), "TLS client certificate \(cert)")
            }
        }
        try options.authentication.apply(to: opts)
        if let handler = options.onAsyncError {
            // Never released, like the boxes below: nats.c may call it after destroy.
            let box = Unmanaged.passRetained(AsyncErrorBox(handler)).toOpaque()
            try set(natsOptions_SetErrorHandler(opts, { connection, _, status, box in AsyncErrorBox.deliver(connection, status, to: box) }, box), "error handler")
        }
        // Deliberately never released, like the event box below: nats.c may call it after destroy.
        let closed = ClosedSignal()
        let closedBox = Unmanaged.passRetained(closed).toOpaque()
        try set(natsOptions_SetClosedCB(opts, { _, box in ClosedSignal.deliver(to: box) }, closedBox), "closed callback")
        self.closed = closed
        if let handler = options.onConnectionEvent {
            // Deliberately never released: nats.c may still run a callback on its own thread
            // after the connection is destroyed. One small box per connection that asked.
            let box = Unmanaged.passRetained(ConnectionEventBox(handler)).toOpaque()
            try set(natsOptions_SetDisconnectedCB(opts, { _, box in ConnectionEventBox.deliver(.disconnected, to: box) }, box), "disconnected callback")
            try set(natsOptions_SetReconnectedCB(opts, { _, box in ConnectionEventBox.deliver(.reconnected, to: box) }, box), "reconnected callback")
        }

        var connection: OpaquePointer?
        let status = natsConnection_Connect(&connection, opts)
        guard status == NATS_OK, let connection else {
            throw NATSError.connect(url: options.url, status: statusText(status))
        }
        cHandle = CHandle(connection)
    }

    deinit {
        natsConnection_Destroy(handle)
    }

    // MARK: Publishing

    /// Publishes `payload` on `subject` (fire-and-forget: use `flush` to know the server has it).
    public func publish(_ subject: String, payload: [UInt8], reply: String? = nil, headers: NATSHeaders? = nil) throws {
        try payload.withUnsafeBytes { try publish(subject, payload: $0, reply: reply, headers: headers) }
    }

    /// Publishes without copying `payload`. Without headers this is a direct
    /// `natsConnection_Publish` (no allocation on the Swift side); with headers one natsMsg is
    /// built and freed.
    public func publish(_ subject: String, payload: UnsafeRawBufferPointer, reply: String? = nil, headers: NATSHeaders? = nil) throws {
        if let headers, !headers.isEmpty {
            let msg = try CMessage.make(subject: subject, reply: reply, payload: payload, headers: headers)
            defer { natsMsg_Destroy(msg) }
            try check(natsConnection_PublishMsg(handle, msg), "publish to \(subject)", subject: subject)
            return
        }
        let status = try withPayload(payload) { data, length in
            if let reply {
                return natsConnection_PublishRequest(handle, subject, reply, data, length)
            }
            return natsConnection_Publish(handle, subject, data, length)
        }
        try check(status, "publish to \(subject)", subject: subject)
    }

    /// Waits until the server has processed everything published so far (a PING/PONG round trip).
    public func flush(timeout: Duration) throws {
        try check(natsConnection_FlushTimeout(handle, timeout.natsTimeoutMilliseconds), "flush within \(timeout)")
    }

    /// Sends a request and waits for the first reply; throws `.timeout` or `.noResponders`.
    public func request(_ subject: String, payload: [UInt8], timeout: Duration) throws -> NATSMessage {
        var reply: OpaquePointer?
        let status = try payload.withUnsafeBytes { bytes in
            try withPayload(bytes) { data, length in
                natsConnection_Request(&reply, handle, subject, data, length, timeout.natsTimeoutMilliseconds)
            }
        }
        guard status == NATS_OK, let reply else {
            throw coreError(status, "request on \(subject) within \(timeout)", subject: subject)
        }
        return NATSMessage(consuming: reply)
    }

    /// The URL of the server connected to now (as given, credentials included), or nil while disconnected.
    var connectedURL: String? {
        var buffer = [CChar](repeating: 0, count: 1_024)
        guard natsConnection_GetConnectedUrl(handle, &buffer, buffer.count) == NATS_OK, buffer[0] != 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A unique inbox subject (`_INBOX.<nuid>`) for replies.
    public func newInbox() -> String {
        var inbox: UnsafeMutablePointer<natsInbox>?
        guard natsInbox_Create(&inbox) == NATS_OK, let inbox else {
            // Only fails on memory exhaustion; fall back to a random token in the same form.
            return "_INBOX.\(UInt64.random(in: .min ... .max))\(UInt64.random(in: .min ... .max))"
        }
        defer { natsInbox_Destroy(inbox) }
        return String(cString: inbox)
    }

    // MARK: JetStream

    /// A JetStream context over this connection. `timeout` bounds each JetStream API call
    /// (publish ack, stream management, ack sync); `maxPendingAsyncPublishes` bounds
    /// `publishAsync` acks in flight (a publisher past it waits up to `timeout`).
    public func jetStream(timeout: Duration = .seconds(5), maxPendingAsyncPublishes: Int = 4_096) throws -> JetStream {
        try JetStream(connection: self, timeout: timeout, maxPendingAsyncPublishes: maxPendingAsyncPublishes)
    }

    // MARK: State and shutdown

    /// True while connected (false while reconnecting, draining or closed).
    public var isConnected: Bool {
        natsConnection_Status(handle) == NATS_CONN_STATUS_CONNECTED
    }

    /// True once closed, by `close()`, a finished drain, or after giving up reconnecting.
    public var isClosed: Bool {
        natsConnection_IsClosed(handle)
    }

    /// Stops every subscription from receiving, lets their handlers finish what they already
    /// have, flushes publishes, then closes. Returns when closed or after `timeout`, closing
    /// the connection anyway in the latter case.
    public func drain(timeout: Duration) {
        if natsConnection_DrainTimeout(handle, timeout.natsTimeoutMilliseconds) == NATS_OK {
            _ = closed.semaphore.wait(timeout: .now() + .milliseconds(Int(timeout.natsTimeoutMilliseconds)))
        }
        close()
    }

    /// Closes the connection; pending publishes are lost unless `flush` ran first. Idempotent.
    public func close() {
        natsConnection_Close(handle)
    }
}

/// A change of a connection's state, for `Options.onConnectionEvent`.
public enum ConnectionEvent: Sendable {
    case disconnected
    case reconnected
}

/// Carries the Swift handler through nats.c's `void *closure`.
private final class ConnectionEventBox: Sendable {
    let handler: @Sendable (ConnectionEvent) -> Void
    init(_ handler: @escaping @Sendable (ConnectionEvent) -> Void) { self.handler = handler }

    static func deliver(_ event: ConnectionEvent, to box: UnsafeMutableRawPointer?) {
        guard let box else { return }
        Unmanaged<ConnectionEventBox>.fromOpaque(box).takeUnretainedValue().handler(event)
    }
}

/// Carries an asynchronous error (with the connection's last error text) to the handler.
private final class AsyncErrorBox: Sendable {
    let handler: @Sendable (String) -> Void
    init(_ handler: @escaping @Sendable (String) -> Void) { self.handler = handler }

    static func deliver(_ connection: OpaquePointer?, _ status: natsStatus, to box: UnsafeMutableRawPointer?) {
        guard let box else { return }
        var text: UnsafePointer<CChar>?
        if let connection { _ = natsConnection_GetLastError(connection, &text) }
        // The last error's text is often empty (a missed heartbeat, a slow consumer): the
        // status then says what happened.
        let detail = text.map { String(cString: $0) } ?? ""
        Unmanaged<AsyncErrorBox>.fromOpaque(box).takeUnretainedValue().handler(detail.isEmpty ? statusText(status) : detail)
    }
}

/// Carries nats.c's closed callback to `drain`, which waits on the semaphore.
private final class ClosedSignal: Sendable {
    let semaphore = DispatchSemaphore(value: 0)

    static func deliver(to box: UnsafeMutableRawPointer?) {
        guard let box else { return }
        Unmanaged<ClosedSignal>.fromOpaque(box).takeUnretainedValue().semaphore.signal()
    }
}
