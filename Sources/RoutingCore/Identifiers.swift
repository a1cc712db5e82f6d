/// Channel, user and instance identifiers: 1–64 characters of `[A-Za-z0-9_-]`, so that every
/// id is exactly one NATS subject token and one Redis key suffix.
public enum Identifier {
    public static let maxLength = 64

    public static func isValid(_ id: String) -> Bool {
        var count = 0
        for byte in id.utf8 {
            count += 1
            guard count <= maxLength, isAllowed(byte) else { return false }
        }
        return count > 0
    }

    public static func isValid(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !bytes.isEmpty, bytes.count <= maxLength else { return false }
        for byte in bytes where !isAllowed(byte) { return false }
        return true
    }

    /// The reason `id` is invalid, for error messages; nil when it is valid.
    public static func problem(_ id: String, kind: String) -> String? {
        if isValid(id) { return nil }
        let shown = id.count > 80 ? "\(id.prefix(80))…" : id
        return "invalid \(kind) id '\(shown)': use 1-\(maxLength) characters of A-Z a-z 0-9 _ -"
    }

    @inline(__always)
    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}

/// FNV-1a, 32 bit: the partition hash every publisher must compute identically.
/// Test vectors (also in the tests and README): "" → 0x811c9dc5, "a" → 0xe40c292c,
/// "foobar" → 0xbf9cf968.
public enum FNV1a {
    public static func hash32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var hash: UInt32 = 0x811c_9dc5
        for byte in bytes {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        return hash
    }

    public static func hash64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

/// `p = fnv1a32(utf8(channelId)) % P` (DESIGN: Partitioning).
public enum Partitioner {
    public static func partition(of channel: String, count: Int) -> Int {
        precondition(count > 0, "partition count must be positive")
        return Int(FNV1a.hash32(channel.utf8) % UInt32(count))
    }
}

/// The subjects of the contract (DESIGN: Streams, Wire formats).
public enum Subjects {
    /// User token of a channel-deletion fact on the membership stream.
    public static let channelDeletedUser = "_"

    public static func event(channel: String, partitionCount: Int) -> String {
        "chat.events.\(Partitioner.partition(of: channel, count: partitionCount)).\(channel)"
    }

    public static func membership(channel: String, user: String, partitionCount: Int) -> String {
        "chat.membership.\(Partitioner.partition(of: channel, count: partitionCount)).\(channel).\(user)"
    }

    public static func typing(channel: String, partitionCount: Int) -> String {
        "chat.typing.\(Partitioner.partition(of: channel, count: partitionCount)).\(channel)"
    }

    public static func inbox(instance: String) -> String { "notify.inbox.\(instance)" }

    public static func deadLetter(partition: Int) -> String { "chat.dlq.\(partition)" }

    /// The partition of `chat.membership.<p>.<channel>.<user>` read from raw bytes, or nil for
    /// any other shape. Allocates nothing: a cold start reads millions of these.
    public static func membershipPartition(_ subject: UnsafeBufferPointer<UInt8>) -> Int? {
        partitionToken(subject)?.value
    }

    /// Whether `subject` is exactly `chat.membership.<partition>.<channel>.<user>` (raw bytes, no
    /// allocation).
    public static func isMembership(_ subject: UnsafeBufferPointer<UInt8>, partition: Int, channel: String, user: String) -> Bool {
        guard let token = partitionToken(subject), token.value == partition else { return false }
        var cursor = token.end
        func consume(_ piece: String.UTF8View) -> Bool {
            for byte in piece {
                guard cursor < subject.count, subject[cursor] == byte else { return false }
                cursor += 1
            }
            return true
        }
        return consume(channel.utf8) && consume(".".utf8) && consume(user.utf8) && cursor == subject.count
    }

    private static let membershipPrefix = Array("chat.membership.".utf8)

    /// The decimal partition token after `chat.membership.` and the index just past its dot.
    private static func partitionToken(_ subject: UnsafeBufferPointer<UInt8>) -> (value: Int, end: Int)? {
        guard subject.count > membershipPrefix.count, subject.starts(with: membershipPrefix) else { return nil }
        var value = 0
        var cursor = membershipPrefix.count
        while cursor < subject.count, subject[cursor] != UInt8(ascii: ".") {
            let digit = Int(subject[cursor]) - Int(UInt8(ascii: "0"))
            guard (0...9).contains(digit), cursor - membershipPrefix.count < 9 else { return nil }
            value = value * 10 + digit
            cursor += 1
        }
        guard cursor > membershipPrefix.count, cursor < subject.count else { return nil }
        return (value, cursor + 1)
    }

}
