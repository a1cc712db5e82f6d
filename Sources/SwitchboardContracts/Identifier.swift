/// Channel, user and instance identifiers: 1–64 characters of `[A-Za-z0-9_-]`, so that every
/// id is exactly one NATS subject token and one Redis key suffix.
///
/// The checks are `@inlinable`: a cold start validates millions of ids read from snapshots.
public enum Identifier {
    public static let maxLength = 64

    @inlinable
    public static func isValid(_ id: String) -> Bool {
        var count = 0
        for byte in id.utf8 {
            count += 1
            guard count <= maxLength, isAllowed(byte) else { return false }
        }
        return count > 0
    }

    @inlinable
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

    @inlinable @inline(__always)
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
/// "foobar" → 0xbf9cf968. `@inlinable` so that callers get a specialized loop (string
/// interning hashes every user id of a cold start).
public enum FNV1a {
    @inlinable
    public static func hash32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var hash: UInt32 = 0x811c_9dc5
        for byte in bytes {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        return hash
    }

    @inlinable
    public static func hash64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

/// `p = fnv1a32(utf8(channelId)) % P`: a contract with every upstream publisher.
public enum Partitioner {
    @inlinable
    public static func partition(of channel: String, count: Int) -> Int {
        precondition(count > 0, "partition count must be positive")
        return Int(FNV1a.hash32(channel.utf8) % UInt32(count))
    }
}
