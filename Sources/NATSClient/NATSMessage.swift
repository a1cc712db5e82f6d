import CNATS

/// NATS message headers: an ordered list of `name: value` fields, where a name may repeat.
///
/// Names are case-sensitive, as nats.c and nats-server treat them. Equality ignores the
/// order of different names (nats.c does not keep it on receipt) but keeps the order of the
/// values of one name.
public struct NATSHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    /// One header field.
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The fields in insertion order.
    public private(set) var fields: [Field] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { Field(name: $0.0, value: $0.1) }
    }

    public var isEmpty: Bool { fields.isEmpty }

    /// The first value of `name`; setting replaces every value of `name` (nil removes them).
    public subscript(name: String) -> String? {
        get { fields.first { $0.name == name }?.value }
        set {
            if let index = fields.firstIndex(where: { $0.name == name }) {
                fields.removeAll { $0.name == name }
                if let newValue { fields.insert(Field(name: name, value: newValue), at: index) }
            } else if let newValue {
                fields.append(Field(name: name, value: newValue))
            }
        }
    }

    /// Every value of `name`, in order.
    public func values(for name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    /// Adds a value to `name`, keeping the ones already there.
    public mutating func append(name: String, value: String) {
        fields.append(Field(name: name, value: value))
    }

    public func makeIterator() -> AnyIterator<(name: String, value: String)> {
        var inner = fields.makeIterator()
        return AnyIterator { inner.next().map { (name: $0.name, value: $0.value) } }
    }

    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        guard lhs.fields.count == rhs.fields.count else { return false }
        return lhs.grouped == rhs.grouped
    }

    private var grouped: [String: [String]] {
        var result: [String: [String]] = [:]
        for field in fields { result[field.name, default: []].append(field.value) }
        return result
    }

    /// Rejects what would corrupt the wire format: a name must be a non-empty token without
    /// `:` or whitespace, a value must not contain CR or LF.
    func validate() throws {
        for field in fields {
            let badName = field.name.isEmpty || field.name.utf8.contains { $0 == UInt8(ascii: ":") || $0 <= 32 || $0 == 127 }
            if badName { throw NATSError.invalidArgument("header name \"\(field.name)\" is empty or contains ':', a space or a control character") }
            if field.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
                throw NATSError.invalidArgument("value of header \(field.name) contains CR or LF")
            }
        }
    }
}

/// A core NATS message, copied out of nats.c (the C message is freed before this exists).
public struct NATSMessage: Sendable {
    public var subject: String
    /// The subject to answer on, for a request.
    public var reply: String?
    public var payload: [UInt8]
    public var headers: NATSHeaders

    public init(subject: String, reply: String? = nil, payload: [UInt8], headers: NATSHeaders = NATSHeaders()) {
        self.subject = subject
        self.reply = reply
        self.payload = payload
        self.headers = headers
    }

    /// Copies `msg` and destroys it.
    init(consuming msg: OpaquePointer) {
        self.init(copying: msg)
        natsMsg_Destroy(msg)
    }

    init(copying msg: OpaquePointer) {
        subject = CMessage.subject(msg)
        reply = CMessage.reply(msg)
        payload = CMessage.payload(msg)
        headers = CMessage.headers(msg)
    }
}
