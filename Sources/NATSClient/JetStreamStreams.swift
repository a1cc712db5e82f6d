import CNATS
import Foundation

extension JetStream {

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
            headers: CMessage.headers(msg),
            timestampNs: natsMsg_GetTime(msg)
        )
    }

    /// The first message of `stream` at or after `sequence` whose subject matches `filter`
    /// (wildcards allowed), or nil when there is none. Read from the stream's leader
    /// (`$JS.API.STREAM.MSG.GET` with `next_by_subj`), so a replica that lags cannot hide one.
    public func nextMessage(stream: String, matching filter: String, atOrAfter sequence: UInt64) throws -> StoredMessage? {
        try Self.validateStreamName(stream)
        let request = try JSONSerialization.data(withJSONObject: ["seq": max(sequence, 1), "next_by_subj": filter] as [String: Any])
        let operation = "next message of \(stream) on \(filter) from \(sequence)"
        let reply: [String: JSONValue]
        do {
            reply = try apiRequest("STREAM.MSG.GET.\(stream)", payload: Array(request), operation: operation)
        } catch NATSError.jetStream(_, let code, _) where code == Int(JSNoMessageFoundErr.rawValue) {
            return nil
        }
        guard case .object(let message)? = reply["message"], case .string(let subject)? = message["subject"],
              let seq = message["seq"]?.intValue, seq > 0, case .string(let time)? = message["time"],
              let timestampNs = RFC3339.nanoseconds(time) else {
            throw NATSError.malformedResponse(operation: operation, reason: "no message with subject, seq and time")
        }
        func decoded(_ key: String) throws -> [UInt8] {
            guard case .string(let text)? = message[key] else { return [] }
            guard let bytes = Data(base64Encoded: text) else {
                throw NATSError.malformedResponse(operation: operation, reason: "\(key) is not base64")
            }
            return Array(bytes)
        }
        return StoredMessage(
            subject: subject, sequence: UInt64(seq), payload: try decoded("data"),
            headers: NATSHeaders(block: try decoded("hdrs")), timestampNs: timestampNs
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
        return StreamState(messages: state.Msgs, bytes: state.Bytes, firstSequence: state.FirstSeq, lastSequence: state.LastSeq, createdNs: info.pointee.Created)
    }

    /// The ack floor (a stream sequence) of the durable consumer `durable` of `stream`, nil
    /// when it does not exist.
    public func consumerAckFloor(stream: String, durable: String) throws -> UInt64? {
        try Self.validateStreamName(stream)
        try Self.validateStreamName(durable, what: "durable name")
        var options = callOptions()
        var code = jsErrCode(0)
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        let status = js_GetConsumerInfo(&info, context, stream, durable, &options, &code)
        if code == JSConsumerNotFoundErr { return nil }
        guard status == NATS_OK, let info else { throw jetStreamError(status, code: code, "consumer info of \(durable) on \(stream)") }
        defer { jsConsumerInfo_Destroy(info) }
        return info.pointee.AckFloor.Stream
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
