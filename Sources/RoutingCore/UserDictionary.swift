import SwitchboardContracts

/// The user ids a replica's partition images refer to, written once for all its images
/// instead of once per image (a user in many partitions was stored in each of them).
///
/// A dictionary is the replica's interner as it grows: string `i` has id `i`, ids never move,
/// so the dictionary of any later moment extends an earlier one and an image written at any
/// point needs only its first `n` entries. It is stored as append-only segments, each tagged
/// with the lineage (one per interner, i.e. per process), so that entries from another
/// process's interner are never mistaken for this one's.
///
/// Segment layout (integers LEB128 varints):
/// `"SBUD" 1` · lineage · first id · count · users (length, UTF-8)…
public enum UserDictionary {
    static let magic: [UInt8] = Array("SBUD".utf8)
    static let version: UInt8 = 1

    /// The entries of `users` from id `first` on, as many as fit in `maxBytes` (at least one
    /// when any is left); returns the segment and the id after its last entry.
    public static func segment(of users: StringInterner, lineage: UInt64, from first: Int, maxBytes: Int) -> (bytes: [UInt8], end: Int) {
        var bytes = magic + [version]
        Varint.append(lineage, to: &bytes)
        Varint.append(UInt64(first), to: &bytes)
        var body: [UInt8] = []
        var end = first
        while end < users.count {
            let fits = users.withUTF8(UInt32(end)) { string in
                guard end == first || bytes.count + 10 + body.count + string.count + 5 <= maxBytes else { return false }
                Varint.append(UInt64(string.count), to: &body)
                body.append(contentsOf: string)
                return true
            }
            guard fits else { break }
            end += 1
        }
        Varint.append(UInt64(end - first), to: &bytes)
        return (bytes + body, end)
    }

    /// A checked segment: the byte ranges of its user ids.
    public struct Segment: Sendable {
        public let first: Int
        let bytes: [UInt8]
        let users: [Range<Int>]

        public var end: Int { first + users.count }

        /// Interns the segment's users in order; returns their ids.
        public func intern(into interner: inout StringInterner) -> [UInt32] {
            bytes.withUnsafeBufferPointer { bytes in
                users.map { interner.intern(bytes: UnsafeBufferPointer(rebasing: bytes[$0])) }
            }
        }
    }

    /// Reads a segment that must belong to `lineage` and start at id `first`.
    public static func decode(_ bytes: [UInt8], lineage: UInt64, first: Int) throws(RoutingImage.DecodeError) -> Segment {
        guard bytes.count > magic.count, Array(bytes[0..<magic.count]) == magic, bytes[magic.count] == version else {
            throw .invalid("not a user dictionary segment (bad magic or version)")
        }
        var reader = RoutingImage.Reader(bytes: bytes, offset: magic.count + 1)
        let written = try reader.varint()
        guard written == lineage else { throw .invalid("dictionary segment of lineage \(String(written, radix: 16)), not \(String(lineage, radix: 16))") }
        let start = try reader.varint()
        guard start == UInt64(first) else { throw .invalid("dictionary segment starts at id \(start), expected \(first)") }
        let users = try reader.userIDs()
        guard reader.offset == bytes.count else { throw .invalid("\(bytes.count - reader.offset) trailing bytes in a dictionary segment") }
        return Segment(first: first, bytes: bytes, users: users)
    }
}
