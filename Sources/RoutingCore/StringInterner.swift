import SwitchboardContracts

/// Maps strings to dense `UInt32` ids (0, 1, 2, … in order of first sight) and back.
///
/// Ids never move and are never reused, so they can sit in member sets. All strings live
/// in one byte arena and the index is an open-addressing table of ids: a few heap objects
/// in total instead of one `String` per user, which is what keeps 1 M user ids near
/// 20 bytes each.
public struct StringInterner: Sendable {
    /// UTF-8 bytes of every interned string, back to back.
    private var arena: [UInt8] = []
    /// `ends[i]` is the arena offset one past string `i` (its start is `ends[i - 1]`).
    private var ends: [UInt32] = []
    /// Open-addressing table: `id + 1`, or 0 for an empty bucket. Size is a power of two.
    private var buckets: [UInt32] = Array(repeating: 0, count: 16)

    public init() {}

    public var count: Int { ends.count }

    /// Bytes held by the arena, the offsets and the table.
    public var byteCount: Int { arena.capacity + ends.capacity * 4 + buckets.capacity * 4 }

    /// The id of `string`, interning it if new.
    public mutating func intern(_ string: String) -> UInt32 {
        var string = string
        return string.withUTF8 { intern(bytes: $0) }
    }

    public mutating func intern(bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        let hash = FNV1a.hash32(bytes)
        var index = Int(hash) & (buckets.count - 1)
        while true {
            let entry = buckets[index]
            if entry == 0 { break }
            if equals(Int(entry - 1), bytes) { return entry - 1 }
            index = (index + 1) & (buckets.count - 1)
        }
        let id = UInt32(ends.count)
        arena.append(contentsOf: bytes)
        ends.append(UInt32(arena.count))
        buckets[index] = id + 1
        if ends.count * 2 > buckets.count { grow() }
        return id
    }

    /// The id of `string` if it was interned.
    public func id(of string: String) -> UInt32? {
        var string = string
        return string.withUTF8 { id(ofBytes: $0) }
    }

    public func id(ofBytes bytes: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var index = Int(FNV1a.hash32(bytes)) & (buckets.count - 1)
        while true {
            let entry = buckets[index]
            if entry == 0 { return nil }
            if equals(Int(entry - 1), bytes) { return entry - 1 }
            index = (index + 1) & (buckets.count - 1)
        }
    }

    public func string(_ id: UInt32) -> String {
        let range = self.range(Int(id))
        return arena.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[range]), as: UTF8.self) }
    }

    /// The UTF-8 bytes of string `id`, lent to `body`.
    public func withUTF8<R>(_ id: UInt32, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let range = self.range(Int(id))
        return try arena.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[range])) }
    }

    private func range(_ id: Int) -> Range<Int> {
        let start = id == 0 ? 0 : Int(ends[id - 1])
        return start..<Int(ends[id])
    }

    private func equals(_ id: Int, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let range = self.range(id)
        guard range.count == bytes.count else { return false }
        return arena.withUnsafeBufferPointer { arena in
            for offset in 0..<bytes.count where arena[range.lowerBound + offset] != bytes[offset] { return false }
            return true
        }
    }

    private mutating func grow() {
        var bigger = [UInt32](repeating: 0, count: buckets.count * 2)
        let mask = bigger.count - 1
        arena.withUnsafeBufferPointer { arena in
            for id in 0..<ends.count {
                let range = self.range(id)
                var index = Int(FNV1a.hash32(UnsafeBufferPointer(rebasing: arena[range]))) & mask
                while bigger[index] != 0 { index = (index + 1) & mask }
                bigger[index] = UInt32(id + 1)
            }
        }
        buckets = bigger
    }
}
