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
    /// Where the consumer's name is in the subject (byte offsets).
    public var consumerToken: Range<Int>

    /// `$JS.ACK.` as one little-endian word: the prefix is checked with one load.
    static let prefixWord: UInt64 = 0x2E4B_4341_2E53_4A24
    static let prefixLength = 8
    static let dot = UInt8(ascii: ".")

    /// The fields of `subject`, or nil when it is not a JetStream ack subject. Every replayed
    /// message is parsed here, so it is two tight passes over the bytes (count the tokens, then
    /// read the five numbers in place) rather than slices and generic helpers.
    public init?(_ subject: UnsafeBufferPointer<UInt8>) {
        let end = subject.count
        guard end > Self.prefixLength, let base = subject.baseAddress,
              UnsafeRawPointer(base).loadUnaligned(as: UInt64.self) == Self.prefixWord.littleEndian else { return nil }
        var tokens = 3  // `$JS`, `ACK` and the one after them
        for index in Self.prefixLength..<end where base[index] == Self.dot { tokens += 1 }
        // The stream's token: 2 in the original form (9 tokens), 4 in the one with a domain (12 or more).
        let streamToken: Int
        switch tokens {
        case 9: streamToken = 2
        case 11...: streamToken = 4
        default: return nil
        }
        var numbers: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        var consumer = 0..<0
        var position = Self.prefixLength
        for token in 2..<tokens {
            var index = position
            let field = token - streamToken - 2
            if field >= 0 && field < 5 {
                var value: UInt64 = 0
                while index < end, base[index] != Self.dot {
                    let digit = base[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    let (times10, overflow) = value.multipliedReportingOverflow(by: 10)
                    let (sum, carry) = times10.addingReportingOverflow(UInt64(digit))
                    guard !overflow, !carry else { return nil }
                    value = sum
                    index += 1
                }
                switch field {
                case 0: numbers.0 = value
                case 1: numbers.1 = value
                case 2: numbers.2 = value
                case 3: numbers.3 = value
                default: numbers.4 = value
                }
            } else {
                while index < end, base[index] != Self.dot { index += 1 }
                if token == streamToken + 1 { consumer = position..<index }
            }
            guard index > position else { return nil }  // an empty token
            position = index + 1
        }
        guard numbers.3 <= UInt64(Int64.max) else { return nil }
        numDelivered = numbers.0
        streamSequence = numbers.1
        consumerSequence = numbers.2
        timestampNs = Int64(numbers.3)
        numPending = numbers.4
        consumerToken = consumer
    }
}
