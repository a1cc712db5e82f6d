/// One RESP2 reply, copied out of hiredis's reply object (which is freed right away).
public enum RedisReply: Sendable, Equatable {
    /// A simple string such as `+OK`.
    case status(String)
    /// An error reply (`-ERR …`). `RedisConnection.command` throws these as
    /// `RedisError.server`; `pipeline` returns them in place.
    case error(String)
    case integer(Int64)
    /// A bulk string: arbitrary bytes.
    case string([UInt8])
    case array([RedisReply])
    /// A nil bulk string or nil array (a missing key, a timed-out blocking pop).
    case null

    /// A bulk string or status as text; nil for other replies and for bytes that are not UTF-8.
    public var text: String? {
        switch self {
        case .string(let bytes): String(validating: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    /// The value of an integer reply, nil otherwise.
    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of an array reply, nil otherwise.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The bytes of a bulk string, nil otherwise.
    public var bytes: [UInt8]? {
        if case .string(let bytes) = self { return bytes }
        return nil
    }

    /// A short description for error messages: the kind and, for small values, the value.
    var summary: String {
        switch self {
        case .status(let text): "status \(Self.clip(text))"
        case .error(let text): "error \(Self.clip(text))"
        case .integer(let value): "integer \(value)"
        case .string(let bytes): "string of \(bytes.count) bytes"
        case .array(let elements): "array of \(elements.count) elements"
        case .null: "null"
        }
    }

    private static func clip(_ text: String) -> String {
        text.count <= 80 ? "\"\(text)\"" : "\"\(text.prefix(80))…\""
    }
}
