/// LEB128 unsigned varints: 7 bits a byte, high bit set on every byte but the last.
enum Varint {
    @inline(__always)
    static func length(_ value: UInt32) -> Int {
        value < 1 << 7 ? 1 : value < 1 << 14 ? 2 : value < 1 << 21 ? 3 : value < 1 << 28 ? 4 : 5
    }

    @inline(__always)
    static func append(_ value: some FixedWidthInteger & UnsignedInteger, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    static func encode(_ value: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length(value))
        append(value, to: &bytes)
        return bytes
    }

    /// Decodes the varint at `offset` of trusted (self-written) bytes; advances `offset`.
    @inline(__always)
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: inout Int) -> UInt32 {
        var byte = bytes[offset]
        offset += 1
        if byte < 0x80 { return UInt32(byte) }
        var value = UInt32(byte & 0x7f)
        var shift: UInt32 = 7
        repeat {
            byte = bytes[offset]
            offset += 1
            value |= UInt32(byte & 0x7f) << shift
            shift += 7
        } while byte >= 0x80
        return value
    }
}
