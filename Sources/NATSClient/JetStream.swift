import CNATS
import Foundation

/// A JetStream context (nats.c `jsCtx`) over a `NATSConnection`: publishing with acks,
/// stream management, and the two consumer shapes Switchboard uses (durable pull, ordered).
///
/// Every call waits at most the context's `timeout` for the server. Safe to use from any
/// thread, except that `deinit` must not race a call in progress (ownership guarantees it).
public final class JetStream: @unchecked Sendable {
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

        public init(subject: String, sequence: UInt64, payload: [UInt8], headers: NATSHeaders = NATSHeaders()) {
            self.subject = subject
            self.sequence = sequence
            self.payload = payload
            self.headers = headers
        }
    }

    /// A stream's counters.
    public struct StreamState: Sendable, Equatable {
        public var messages: UInt64
        public var bytes: UInt64
        public var firstSequence: UInt64
        public var lastSequence: UInt64

        public init(messages: UInt64, bytes: UInt64, firstSequence: UInt64, lastSequence: UInt64) {
            self.messages = messages
            self.bytes = bytes
            self.firstSequence = firstSequence
            self.lastSequence = lastSequence
        }
    }

    /// The connection is kept alive as long as the context.
    public let connection: NATSConnection
    /// Bound on each JetStream API call.
    public let timeout: Duration
    /// The `jsCtx*`; valid until deinit.
    let context: OpaquePointer
    private let apiPrefix = "$JS.API"
    private let asyncFailureID: UInt

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
        self.context = context
    }

    deinit {
        jsCtx_Destroy(context)
        asyncPublishFailures.unregister(asyncFailureID)
    }

    /// Options for one API call, with the context's wait.
    private func callOptions() -> jsOptions {
        var options = jsOptions()
        jsOptions_Init(&options)
        options.Wait = timeout.natsTimeoutMilliseconds
        return options
    }

    // MARK: Publishing

    /// Stores a message and waits for the server's ack. With `msgID`, the message carries
    /// `Nats-Msg-Id` and the server drops a duplicate inside the stream's duplicate window.
    public func publish(_ subject: String, payload: [UInt8], msgID: String? = nil, headers: NATSHeaders? = nil, timeout: Duration? = nil) throws -> PublishAck {
        let wait = (timeout ?? self.timeout).natsTimeoutMilliseconds
        var ack: UnsafeMutablePointer<jsPubAck>?
        var code = jsErrCode(0)
        let status = try withOptionalCString(msgID) { cMsgID in
            var publishOptions = jsPubOptions()
            jsPubOptions_Init(&publishOptions)
            publishOptions.MaxWait = wait
            publishOptions.MsgId = cMsgID
            return try payload.withUnsafeBytes { bytes in
                if let headers, !headers.isEmpty {
                    let msg = try CMessage.make(subject: subject, reply: nil, payload: bytes, headers: headers)
                    defer { natsMsg_Destroy(msg) }
                    return js_PublishMsg(&ack, context, msg, &publishOptions, &code)
                }
                return try withPayload(bytes) { data, length in
                    js_Publish(&ack, context, subject, data, length, &publishOptions, &code)
                }
            }
        }
        guard status == NATS_OK, let ack else {
            throw jetStreamError(status, code: code, "publish to \(subject)", subject: subject)
        }
        defer { jsPubAck_Destroy(ack) }
        return PublishAck(
            stream: ack.pointee.Stream.map { String(cString: $0) } ?? "",
            sequence: ack.pointee.Sequence,
            duplicate: ack.pointee.Duplicate
        )
    }

    /// Publishes without waiting for the ack (for loaders and benchmarks). At most the
    /// context's `maxPendingAsyncPublishes` acks are outstanding; past that this call waits
    /// up to the context's timeout. Failures surface in `publishAsyncComplete`.
    public func publishAsync(_ subject: String, payload: [UInt8], msgID: String? = nil) throws {
        let status = try withOptionalCString(msgID) { cMsgID in
            var publishOptions = jsPubOptions()
            jsPubOptions_Init(&publishOptions)
            publishOptions.MsgId = cMsgID
            return try payload.withUnsafeBytes { bytes in
                try withPayload(bytes) { data, length in
                    js_PublishAsync(context, subject, data, length, &publishOptions)
                }
            }
        }
        try check(status, "asynchronous publish to \(subject)", subject: subject)
    }

    /// Waits until every `publishAsync` so far is acked, then throws if any failed since the
    /// previous call (with the count and the first failure).
    public func publishAsyncComplete(timeout: Duration) throws {
        var publishOptions = jsPubOptions()
        jsPubOptions_Init(&publishOptions)
        publishOptions.MaxWait = timeout.natsTimeoutMilliseconds
        let status = js_PublishAsyncComplete(context, &publishOptions)
        let failures = asyncPublishFailures.take(asyncFailureID)
        if failures.count > 0 {
            throw NATSError.jetStream(
                operation: "asynchronous publish",
                code: failures.firstCode,
                description: "\(failures.count) message(s) not stored; first: \(failures.first ?? "unknown")"
            )
        }
        if status == NATS_TIMEOUT {
            throw NATSError.timeout(operation: "waiting for asynchronous publish acks within \(timeout)")
        }
        try check(status, "waiting for asynchronous publish acks")
    }

    // MARK: Streams

    /// Creates the stream `configJSON` describes (JetStream API JSON, as in `streams/*.json`)
    /// if it is missing, updates it if a field the JSON sets differs from the server's
    /// config, else leaves it alone. The JSON goes to the server as is.
    public func applyStream(configJSON: [UInt8]) throws -> StreamApplyResult {
        let desired: [String: JSONValue]
        do {
            guard case .object(let object) = try JSONDecoder().decode(JSONValue.self, from: Data(configJSON)) else {
                throw NATSError.invalidArgument("stream config is not a JSON object")
            }
            desired = object
        } catch let error as NATSError {
            throw error
        } catch {
            throw NATSError.invalidArgument("stream config is not valid JSON: \(error)")
        }
        guard case .string(let name)? = desired["name"] else {
            throw NATSError.invalidArgument("stream config has no \"name\"")
        }
        try Self.validateStreamName(name)

        let current: [String: JSONValue]
        do {
            let info = try apiRequest("STREAM.INFO.\(name)", payload: [], operation: "stream info of \(name)")
            guard case .object(let config)? = info["config"] else {
                throw NATSError.malformedResponse(operation: "stream info of \(name)", reason: "no \"config\" object")
            }
            current = config
        } catch NATSError.jetStream(_, let code, _) where code == Int(JSStreamNotFoundErr.rawValue) {
            _ = try apiRequest("STREAM.CREATE.\(name)", payload: configJSON, operation: "create stream \(name)")
            return .created
        }
        let differs = desired.contains { key, value in
            guard let serverValue = current[key] else { return !value.isZeroValue }
            return serverValue != value
        }
        guard differs else { return .unchanged }
        _ = try apiRequest("STREAM.UPDATE.\(name)", payload: configJSON, operation: "update stream \(name)")
        return .updated
    }

    /// Removes the messages of `stream` (only those on `subject`, wildcards allowed, when given).
    public func purge(stream: String, subject: String? = nil) throws {
        try Self.validateStreamName(stream)
        var options = callOptions()
        var code = jsErrCode(0)
        let status = withOptionalCString(subject) { cSubject in
            options.Stream.Purge.Subject = cSubject
            return js_PurgeStream(context, stream, &options, &code)
        }
        if status != NATS_OK {
            throw jetStreamError(status, code: code, "purge \(stream)\(subject.map { " subject \($0)" } ?? "")")
        }
    }

    /// The newest message on `subject` in `stream`, or nil when that subject has none.
    public func lastMessage(stream: String, subject: String) throws -> StoredMessage? {
        try Self.validateStreamName(stream)
        var options = callOptions()
        var code = jsErrCode(0)
        var msg: OpaquePointer?
        let status = js_GetLastMsg(&msg, context, stream, subject, &options, &code)
        if code == JSNoMessageFoundErr || (status == NATS_NOT_FOUND && code.rawValue == 0) { return nil }
        guard status == NATS_OK, let msg else {
            throw jetStreamError(status, code: code, "last message of \(stream) on \(subject)", subject: subject)
        }
        defer { natsMsg_Destroy(msg) }
        return StoredMessage(
            subject: CMessage.subject(msg),
            sequence: natsMsg_GetSequence(msg),
            payload: CMessage.payload(msg),
            headers: CMessage.headers(msg)
        )
    }

    /// Message and byte counts and the sequence range of `stream`.
    public func streamState(_ stream: String) throws -> StreamState {
        try Self.validateStreamName(stream)
        var options = callOptions()
        var code = jsErrCode(0)
        var info: UnsafeMutablePointer<jsStreamInfo>?
        let status = js_GetStreamInfo(&info, context, stream, &options, &code)
        guard status == NATS_OK, let info else { throw jetStreamError(status, code: code, "stream info of \(stream)") }
        defer { jsStreamInfo_Destroy(info) }
        let state = info.pointee.State
        return StreamState(messages: state.Msgs, bytes: state.Bytes, firstSequence: state.FirstSeq, lastSequence: state.LastSeq)
    }

    /// Deletes the durable consumer `durable` of `stream`; throws `.jetStream` with code
    /// 10014 when it does not exist.
    public func deleteConsumer(stream: String, durable: String) throws {
        try Self.validateStreamName(stream)
        var options = callOptions()
        var code = jsErrCode(0)
        let status = js_DeleteConsumer(context, stream, durable, &options, &code)
        if status != NATS_OK { throw jetStreamError(status, code: code, "delete consumer \(durable) of \(stream)") }
    }

    // MARK: Consumers

    /// Binds to the durable pull consumer `durable` of `stream`, with `ackPolicy`, creating
    /// it if missing and updating it if `ackWait`, `maxAckPending` or `maxDeliver` changed.
    /// `ackWait` is how long the server waits for an ack before redelivering; `maxAckPending`
    /// bounds unacked messages in flight; `maxDeliver` (-1: unlimited) bounds deliveries of
    /// one message.
    ///
    /// The consumer is created here through the API, not by nats.c's subscribe, because nats.c
    /// deletes a consumer it created when the subscription is unsubscribed, durable or not;
    /// a durable must outlive the process (its ack floor is the partition's position).
    /// How a durable pull consumer's acks count.
    public enum AckPolicy: Sendable {
        /// Each message is acked on its own.
        case explicit
        /// Acking a message acks every earlier one: one ack per batch for a consumer that
        /// processes strictly in order.
        case all

        var c: jsAckPolicy { self == .explicit ? js_AckExplicit : js_AckAll }
    }

    ///
    /// With `restartAtAckFloor`, an existing consumer is recreated to deliver from just past
    /// its ack floor: everything a previous process fetched but did not ack comes first and
    /// in order, now rather than after the ack wait. An `.all` consumer needs this: its first
    /// ack would otherwise also ack what a crashed predecessor left pending.
    public func pullSubscribe(stream: String, durable: String, filterSubject: String, ackWait: Duration = .seconds(30), maxAckPending: Int = 20_000, maxDeliver: Int = -1, ackPolicy: AckPolicy = .explicit, restartAtAckFloor: Bool = false) throws -> PullSubscription {
        try Self.validateStreamName(stream)
        try Self.validateStreamName(durable, what: "durable name")
        guard maxAckPending > 0 else { throw NATSError.invalidArgument("maxAckPending must be positive") }
        guard maxDeliver == -1 || maxDeliver > 0 else { throw NATSError.invalidArgument("maxDeliver must be -1 (unlimited) or positive") }
        try ensureDurablePullConsumer(
            stream: stream, durable: durable, filterSubject: filterSubject,
            ackWait: ackWait.natsNanoseconds, maxAckPending: Int64(maxAckPending), maxDeliver: Int64(maxDeliver), ackPolicy: ackPolicy.c,
            restartAtAckFloor: restartAtAckFloor
        )
        var options = callOptions()
        var code = jsErrCode(0)
        var sub: OpaquePointer?
        let status = stream.withCString { cStream in
            durable.withCString { cDurable in
                var subscribeOptions = jsSubOptions()
                jsSubOptions_Init(&subscribeOptions)
                subscribeOptions.Stream = cStream
                subscribeOptions.Consumer = cDurable
                return js_PullSubscribe(&sub, context, filterSubject, cDurable, &options, &subscribeOptions, &code)
            }
        }
        guard status == NATS_OK, let sub else {
            throw jetStreamError(status, code: code, "pull subscribe \(durable) on \(stream) (\(filterSubject))", subject: filterSubject)
        }
        return PullSubscription(handle: sub, jetStream: self, description: "consumer \(durable) of \(stream)")
    }

    private func ensureDurablePullConsumer(stream: String, durable: String, filterSubject: String, ackWait: Int64, maxAckPending: Int64, maxDeliver: Int64, ackPolicy: jsAckPolicy, restartAtAckFloor: Bool) throws {
        var options = callOptions()
        var code = jsErrCode(0)
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        let lookup = js_GetConsumerInfo(&info, context, stream, durable, &options, &code)
        var exists: Bool
        /// Where a recreated consumer resumes (0: from the start).
        var resumeAt: UInt64 = 0
        if lookup == NATS_OK, let info {
            defer { jsConsumerInfo_Destroy(info) }
            if !restartAtAckFloor, let config = info.pointee.Config?.pointee,
               config.AckWait == ackWait, config.MaxAckPending == maxAckPending, config.MaxDeliver == maxDeliver,
               config.AckPolicy == ackPolicy,
               config.FilterSubject.map({ String(cString: $0) }) == filterSubject {
                return
            }
            exists = true
            if let config = info.pointee.Config?.pointee, restartAtAckFloor || config.AckPolicy != ackPolicy {
                // The server cannot change an ack policy or rewind a consumer in place:
                // recreate it just past its ack floor, so its position survives.
                resumeAt = info.pointee.AckFloor.Stream + 1
                try deleteConsumer(stream: stream, durable: durable)
                exists = false
            }
        } else if code == JSConsumerNotFoundErr {
            exists = false
        } else {
            throw jetStreamError(lookup, code: code, "consumer info of \(durable) on \(stream)")
        }

        var created: UnsafeMutablePointer<jsConsumerInfo>?
        code = jsErrCode(0)
        let status = durable.withCString { cDurable in
            filterSubject.withCString { cFilter in
                var config = jsConsumerConfig()
                jsConsumerConfig_Init(&config)
                config.Durable = cDurable
                config.FilterSubject = cFilter
                config.AckPolicy = ackPolicy
                config.DeliverPolicy = resumeAt > 0 ? js_DeliverByStartSequence : js_DeliverAll
                config.OptStartSeq = resumeAt
                config.AckWait = ackWait
                config.MaxAckPending = maxAckPending
                config.MaxDeliver = maxDeliver
                return exists
                    ? js_UpdateConsumer(&created, context, stream, &config, &options, &code)
                    : js_AddConsumer(&created, context, stream, &config, &options, &code)
            }
        }
        if let created { jsConsumerInfo_Destroy(created) }
        if status != NATS_OK {
            throw jetStreamError(status, code: code, "\(exists ? "update" : "create") consumer \(durable) on \(stream) (\(filterSubject))")
        }
    }

    /// An ordered consumer: an ephemeral, flow-controlled push consumer without acks that
    /// nats.c recreates on a gap, so messages come exactly in stream order. Replays
    /// `filterSubject` of `stream` from `startSequence` (0: from the first message).
    /// `createTimeout` bounds the creation request alone: on a large stream the server counts
    /// the filter's pending messages first, which takes far longer than an ordinary call.
    public func orderedConsumer(stream: String, filterSubject: String, startSequence: UInt64, createTimeout: Duration? = nil) throws -> OrderedConsumer {
        try Self.validateStreamName(stream)
        var options = callOptions()
        if let createTimeout { options.Wait = createTimeout.natsTimeoutMilliseconds }
        var code = jsErrCode(0)
        var sub: OpaquePointer?
        let status = stream.withCString { cStream in
            var subscribeOptions = jsSubOptions()
            jsSubOptions_Init(&subscribeOptions)
            subscribeOptions.Stream = cStream
            subscribeOptions.Ordered = true
            if startSequence > 0 {
                subscribeOptions.Config.DeliverPolicy = js_DeliverByStartSequence
                subscribeOptions.Config.OptStartSeq = startSequence
            } else {
                subscribeOptions.Config.DeliverPolicy = js_DeliverAll
            }
            return js_SubscribeSync(&sub, context, filterSubject, &options, &subscribeOptions, &code)
        }
        guard status == NATS_OK, let sub else {
            throw jetStreamError(status, code: code, "ordered consumer on \(stream) (\(filterSubject))", subject: filterSubject)
        }
        // Flow control keeps the server within 32 MB of unread data; nats.c's default of
        // 65 536 pending messages is far less for small messages, and what it drops is lost.
        let limits = natsSubscription_SetPendingLimits(sub, -1, OrderedConsumer.pendingByteLimit)
        guard limits == NATS_OK else {
            _ = natsSubscription_Unsubscribe(sub)
            natsSubscription_Destroy(sub)
            throw coreError(limits, "pending limits of ordered consumer on \(stream)")
        }
        return OrderedConsumer(handle: sub, jetStream: self, description: "ordered consumer on \(stream) (\(filterSubject))")
    }

    // MARK: Raw API

    /// One JetStream API request (`$JS.API.<suffix>`) with a JSON reply; the reply's
    /// `error` object becomes `NATSError.jetStream`.
    private func apiRequest(_ suffix: String, payload: [UInt8], operation: String) throws -> [String: JSONValue] {
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

// MARK: - Asynchronous publish failures

/// Failures of `publishAsync`, per JetStream context. nats.c reports them on its own thread
/// through a C callback whose closure is the context's registry id (an integer, not a
/// pointer), so a callback that races the context's deinit finds no entry instead of freed memory.
final class AsyncPublishFailures: @unchecked Sendable {
    struct Entry {
        var count = 0
        var first: String?
        var firstCode = 0
    }

    private let lock = NSLock()
    private var entries: [UInt: Entry] = [:]
    private var nextID: UInt = 1

    func register() -> UInt {
        lock.withLock {
            let id = nextID
            nextID += 1
            entries[id] = Entry()
            return id
        }
    }

    func unregister(_ id: UInt) {
        lock.withLock { _ = entries.removeValue(forKey: id) }
    }

    func record(_ id: UInt, _ text: String, code: Int) {
        lock.withLock {
            guard entries[id] != nil else { return }
            entries[id]!.count += 1
            if entries[id]!.first == nil {
                entries[id]!.first = text
                entries[id]!.firstCode = code
            }
        }
    }

    /// The failures since the last call, resetting them.
    func take(_ id: UInt) -> Entry {
        lock.withLock {
            let entry = entries[id] ?? Entry()
            if entries[id] != nil { entries[id] = Entry() }
            return entry
        }
    }
}

let asyncPublishFailures = AsyncPublishFailures()

private let recordAsyncPublishFailure: jsPubAckErrHandler = { _, failure, closure in
    guard let failure else { return }
    let id = UInt(bitPattern: closure)
    let subject = failure.pointee.Msg.map { CMessage.subject($0) } ?? "?"
    let text = failure.pointee.ErrText.map { String(cString: $0) } ?? String(cString: natsStatus_GetText(failure.pointee.Err))
    let code = failure.pointee.ErrCode.rawValue != 0 ? Int(failure.pointee.ErrCode.rawValue) : Int(failure.pointee.Err.rawValue)
    asyncPublishFailures.record(id, "\(subject): \(text)", code: code)
}

// MARK: - JSON

/// A JSON value, for comparing stream configs field by field.
enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    var intValue: Int? {
        switch self {
        case .int(let value): Int(exactly: value)
        case .double(let value): Int(exactly: value)
        default: nil
        }
    }

    /// What the server leaves out of a config it echoes (Go's `omitempty`).
    var isZeroValue: Bool {
        switch self {
        case .null: true
        case .bool(let value): !value
        case .int(let value): value == 0
        case .double(let value): value == 0
        case .string(let value): value.isEmpty
        case .array(let value): value.isEmpty
        case .object(let value): value.isEmpty
        }
    }

    static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.int(let a), .double(let b)), (.double(let b), .int(let a)): Double(a) == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a == b
        default: false
        }
    }
}
