/// What nats-server writes about a JetStream delivery in its reply subject (ADR-15), read
/// without allocating: nats.c's `natsMsg_GetMetaData` allocates a struct and two strings per
/// message, which a replay of millions of messages pays for on every one.
///
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>`,
/// or with a domain and an account hash after `$JS.ACK.` and a random token (or more) at the end.
public struct JetStreamAckSubject: Equatable, Sendable {
    public var numDelivered: UInt64
    public var streamSequence: UInt64
    public var consumerSequence: UInt64
    public var timestampNs: Int64
    public var numPending: UInt64

    static let prefix = Array("$JS.ACK.".utf8)

    /// The fields of `subject`, or nil when it is not a JetStream ack subject.
    public init?(_ subject: UnsafeBufferPointer<UInt8>) {
        guard subject.count > Self.prefix.count, subject.starts(with: Self.prefix) else { return nil }
        var tokens = 1
        for byte in subject where byte == UInt8(ascii: ".") { tokens += 1 }
        // The stream's token: 2 in the original form (9 tokens), 4 in the one with a domain (12 or more).
        let streamToken: Int
        switch tokens {
        case 9: streamToken = 2
        case 11...: streamToken = 4
        default: return nil
        }
        var numbers: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        var token = 0
        var start = 0
        for index in 0...subject.count where index == subject.count || subject[index] == UInt8(ascii: ".") {
            let field = token - streamToken - 2
            if (0..<5).contains(field) {
                guard let value = Self.decimal(UnsafeBufferPointer(rebasing: subject[start..<index])) else { return nil }
                switch field {
                case 0: numbers.0 = value
                case 1: numbers.1 = value
                case 2: numbers.2 = value
                case 3: numbers.3 = value
                default: numbers.4 = value
                }
            } else if index == start {
                return nil  // an empty stream, consumer or other token
            }
            token += 1
            start = index + 1
        }
        guard numbers.3 <= UInt64(Int64.max) else { return nil }
        numDelivered = numbers.0
        streamSequence = numbers.1
        consumerSequence = numbers.2
        timestampNs = Int64(numbers.3)
        numPending = numbers.4
    }

    private static func decimal(_ digits: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        var value: UInt64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            let (times10, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow, !carry else { return nil }
            value = sum
        }
        return value
    }
}
