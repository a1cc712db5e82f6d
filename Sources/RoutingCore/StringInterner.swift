import SwitchboardContracts

/// Maps strings to dense `UInt32` ids (0, 1, 2, … in order of first sight) and back.
///
/// Ids never move and are never reused, so they can sit in member sets. All strings live
/// in one byte arena and the index is an open-addressing table of arena offsets: a few heap
/// objects in total instead of one `String` per user, which is what keeps 1 M user ids near
/// 25 bytes each.
public struct StringInterner: Sendable {
    /// The longest string that can be interned (ids are at most `Identifier.maxLength`).
    public static let maxLength = 255
    /// Every interned string as a record, back to back: its id (4 bytes, little-endian), its
    /// length (1 byte), its UTF-8 bytes. Keeping the id beside the bytes lets a lookup touch
    /// two places (bucket, record) rather than three (bucket, offsets, bytes): a cold start
    /// interns 20 M user ids among a million, and each place is a cache miss.
    private var arena: [UInt8] = []
    /// `starts[i]` is the arena offset of string `i`'s record.
    private var starts: [UInt32] = []
    /// Open-addressing table: record offset + 1, or 0 for an empty bucket. Size is a power of two.
    private var buckets: [UInt32] = Array(repeating: 0, count: 16)

    static let headerBytes = 5
    /// What `prefetch` read, kept only so that its reads happen.
    private var prefetched: UInt32 = 0

    public init() {}

    public var count: Int { starts.count }

    /// Bytes held by the arena, the offsets and the table.
    public var byteCount: Int { arena.capacity + starts.capacity * 4 + buckets.capacity * 4 }

    /// Drops the arena's and offsets' growth slack (after a bulk load): appending doubles
    /// capacity, so without this up to half of the arena can be empty.
    public mutating func compact() {
        arena = arena.withoutSlack()
        starts = starts.withoutSlack()
    }

    /// The id of `string`, interning it if new.
    public mutating func intern(_ string: String) -> UInt32 {
        var string = string
        return string.withUTF8 { intern(bytes: $0) }
    }

    public mutating func intern(bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        precondition(bytes.count <= Self.maxLength, "interned strings are at most \(Self.maxLength) bytes")
        let mask = buckets.count - 1
        var index = Int(FNV1a.hash32(bytes)) & mask
        while true {
            let entry = buckets[index]
            if entry == 0 { break }
            if let id = id(atRecord: Int(entry - 1), ifEqualTo: bytes) { return id }
            index = (index + 1) & mask
        }
        let id = UInt32(starts.count)
        let offset = arena.count
        precondition(offset + Self.headerBytes + bytes.count < Int(UInt32.max), "string interner arena full")
        starts.append(UInt32(offset))
        withUnsafeBytes(of: id.littleEndian) { arena.append(contentsOf: $0) }
        arena.append(UInt8(bytes.count))
        arena.append(contentsOf: bytes)
        buckets[index] = UInt32(offset + 1)
        if starts.count * 2 > buckets.count { grow() }
        return id
    }

    /// Reads the bucket and the record that looking each of `strings` up touches first, so that
    /// interning them right after finds both in cache. At a million users the index and arena
    /// are tens of megabytes and a replay brings users in no order, so a lookup is two cache
    /// misses, one waiting for the other; here the loads of many lookups are independent and the
    /// processor overlaps their misses. Changes nothing the interner answers.
    public mutating func prefetch(_ strings: [String]) {
        guard strings.count > 1 else { return }
        let mask = buckets.count - 1
        var sum: UInt32 = 0
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: strings.count) { entries in
            buckets.withUnsafeBufferPointer { buckets in
                for (index, string) in strings.enumerated() {
                    var string = string
                    entries[index] = buckets[Int(string.withUTF8 { FNV1a.hash32($0) }) & mask]
                }
            }
            arena.withUnsafeBufferPointer { arena in
                for entry in entries where entry != 0 { sum &+= UInt32(arena[Int(entry - 1)]) }
            }
        }
        // Stored, so that the reads above are not optimised away.
        prefetched = sum
    }

    /// The id of `string` if it was interned.
    public func id(of string: String) -> UInt32? {
        var string = string
        return string.withUTF8 { id(ofBytes: $0) }
    }

    public func id(ofBytes bytes: UnsafeBufferPointer<UInt8>) -> UInt32? {
        guard bytes.count <= Self.maxLength else { return nil }
        let mask = buckets.count - 1
        var index = Int(FNV1a.hash32(bytes)) & mask
        while true {
            let entry = buckets[index]
            if entry == 0 { return nil }
            if let id = id(atRecord: Int(entry - 1), ifEqualTo: bytes) { return id }
            index = (index + 1) & mask
        }
    }

    public func string(_ id: UInt32) -> String {
        withUTF8(id) { String(decoding: $0, as: UTF8.self) }
    }

    /// The UTF-8 bytes of string `id`, lent to `body`.
    public func withUTF8<R>(_ id: UInt32, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let start = Int(starts[Int(id)]) + Self.headerBytes
        return try arena.withUnsafeBufferPointer { arena in
            try body(UnsafeBufferPointer(rebasing: arena[start..<start + Int(arena[start - 1])]))
        }
    }

    /// The record's id when its bytes equal `bytes`.
    @inline(__always)
    private func id(atRecord offset: Int, ifEqualTo bytes: UnsafeBufferPointer<UInt8>) -> UInt32? {
        arena.withUnsafeBufferPointer { arena in
            guard Int(arena[offset + 4]) == bytes.count else { return nil }
            let start = offset + Self.headerBytes
            for index in 0..<bytes.count where arena[start + index] != bytes[index] { return nil }
            return UInt32(arena[offset]) | UInt32(arena[offset + 1]) << 8 | UInt32(arena[offset + 2]) << 16 | UInt32(arena[offset + 3]) << 24
        }
    }

    private mutating func grow() {
        var bigger = [UInt32](repeating: 0, count: buckets.count * 2)
        let mask = bigger.count - 1
        arena.withUnsafeBufferPointer { arena in
            for offset in starts {
                let start = Int(offset) + Self.headerBytes
                var index = Int(FNV1a.hash32(UnsafeBufferPointer(rebasing: arena[start..<start + Int(arena[start - 1])]))) & mask
                while bigger[index] != 0 { index = (index + 1) & mask }
                bigger[index] = offset + 1
            }
        }
        buckets = bigger
    }
}

extension Array {
    /// The same elements in storage of their count (after a bulk load: appending doubles
    /// capacity, so up to half of a grown array can be empty).
    func withoutSlack() -> [Element] {
        guard capacity > count else { return self }
        var trimmed: [Element] = []
        trimmed.reserveCapacity(count)
        trimmed.append(contentsOf: self)
        return trimmed
    }
}
