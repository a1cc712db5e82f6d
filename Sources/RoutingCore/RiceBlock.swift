/// Sorted values as a first value and Rice-coded gaps (bit stream, least significant bit
/// first). A gap whose unary part would reach `escapeLength` zeros is written as that many
/// zeros and the raw 32-bit gap, which bounds the cost of a poor parameter.
struct RiceBlock: Sendable, Equatable {
    static let escapeLength: UInt32 = 24

    private(set) var first: UInt32 = 0
    private(set) var count: UInt32 = 0
    private(set) var last: UInt32 = 0
    private(set) var parameter: UInt8 = 0
    /// True while the bits are exactly as `encode` wrote them (best parameter, no slack).
    /// Fits in the padding after `parameter`.
    private(set) var isCompact = false
    private var bitLength: UInt32 = 0
    private var bits: [UInt8] = []

    init() {}

    /// Same encoding; whether it was compacted does not matter.
    static func == (lhs: RiceBlock, rhs: RiceBlock) -> Bool {
        lhs.first == rhs.first && lhs.count == rhs.count && lhs.last == rhs.last && lhs.parameter == rhs.parameter
            && lhs.bitLength == rhs.bitLength && lhs.bits == rhs.bits
    }

    init(first: UInt32, parameter: UInt8 = 0) {
        self.first = first
        self.last = first
        self.count = 1
        self.parameter = parameter
    }

    var heapBytes: Int { bits.capacity == 0 ? 0 : 32 + bits.capacity }
    var payloadBytes: Int { (Int(bitLength) + 7) / 8 }

    // MARK: writing

    mutating func append(_ value: UInt32, after previous: UInt32) {
        write(gap: value - previous - 1)
        count += 1
        last = value
        // Re-fit the parameter as the block doubles: amortized O(1) per append.
        if count >= 8 && count & (count - 1) == 0 {
            var scratch: [UInt32] = []
            reencode(scratch: &scratch)
        }
    }

    private mutating func write(gap: UInt32) {
        isCompact = false
        let code = Self.code(gap: gap, parameter: parameter)
        writeBits(code.bits, count: code.count)
    }

    /// The code of `gap`, least significant bit first: `quotient` zeros, a one, then the low
    /// `parameter` bits; or, for a quotient of `escapeLength` or more, that many zeros and the
    /// gap in 32 bits. At most 56 bits.
    @inline(__always)
    static func code(gap: UInt32, parameter: UInt8) -> (bits: UInt64, count: UInt32) {
        let quotient = gap >> UInt32(parameter)
        if quotient >= escapeLength { return (UInt64(gap) << UInt64(escapeLength), escapeLength + 32) }
        let remainder = UInt64(gap) & ((1 << UInt64(parameter)) - 1)
        return ((remainder << 1 | 1) << UInt64(quotient), quotient + 1 + UInt32(parameter))
    }

    /// Appends the low `count` (≤ 64) bits of `value`.
    private mutating func writeBits(_ value: UInt64, count: UInt32) {
        var value = value
        var remaining = count
        while remaining > 0 {
            let offset = bitLength & 7
            if offset == 0 { bits.append(0) }
            let take = min(remaining, 8 - offset)
            bits[bits.count - 1] |= UInt8(truncatingIfNeeded: (value & ((1 << UInt64(take)) - 1)) << UInt64(offset))
            value >>= UInt64(take)
            remaining -= take
            bitLength += take
        }
    }

    /// Rewrites the block from `values` (ascending, non-empty) with the best parameter,
    /// into a buffer of exactly the needed size.
    mutating func encode(_ values: ArraySlice<UInt32>) {
        first = values.first!
        last = values.last!
        count = UInt32(values.count)
        parameter = Self.bestParameter(first: first, last: last, count: count)
        var totalBits = 0
        var previous = first
        for value in values.dropFirst() {
            totalBits += Self.codeLength(gap: value - previous - 1, parameter: parameter)
            previous = value
        }
        var buffer = [UInt8](repeating: 0, count: (totalBits + 7) / 8)
        let parameter = self.parameter
        buffer.withUnsafeMutableBufferPointer { out in
            var writer = BitWriter(out)
            previous = first
            for value in values.dropFirst() {
                let code = Self.code(gap: value - previous - 1, parameter: parameter)
                writer.write(code.bits, count: code.count)
                previous = value
            }
            writer.flush()
        }
        bits = buffer
        bitLength = UInt32(totalBits)
        isCompact = true
    }

    static func codeLength(gap: UInt32, parameter: UInt8) -> Int {
        Int(code(gap: gap, parameter: parameter).count)
    }

    mutating func reencode(scratch: inout [UInt32]) {
        scratch.removeAll(keepingCapacity: true)
        forEach { scratch.append($0) }
        encode(scratch[...])
    }

    /// k ≈ log2(mean gap · ln 2): the Rice parameter minimizing the expected length for
    /// geometrically distributed gaps.
    static func bestParameter(first: UInt32, last: UInt32, count: UInt32) -> UInt8 {
        guard count > 1 else { return 0 }
        let meanGap = Double(last - first - (count - 1)) / Double(count - 1)
        let scaled = meanGap * 0.69
        guard scaled >= 2 else { return 0 }
        return UInt8(min(31, Int(scaled.log2Floor)))
    }

    // MARK: reading

    @inline(__always)
    func forEach(_ body: (UInt32) throws -> Void) rethrows {
        guard count > 0 else { return }
        var current = first
        try body(current)
        guard count > 1 else { return }
        let k = UInt64(parameter)
        let mask: UInt64 = (1 << k) - 1
        try bits.withUnsafeBufferPointer { bytes in
            var reader = BitReader(bytes)
            for _ in 1..<count {
                let zeros = reader.countZerosThenSkipOne(limit: Self.escapeLength)
                let gap: UInt64
                if zeros == Self.escapeLength {
                    gap = reader.read(32)
                } else {
                    gap = UInt64(zeros) << k | (reader.read(k) & mask)
                }
                current &+= UInt32(truncatingIfNeeded: gap) &+ 1
                try body(current)
            }
        }
    }

    func contains(_ value: UInt32) -> Bool {
        guard count > 0, value >= first, value <= last else { return false }
        var found = false
        // forEach cannot stop early without throwing; blocks are bounded, so a full scan
        // of one block is acceptable here (not on the planning path).
        forEach { if $0 == value { found = true } }
        return found
    }

    // MARK: editing (decode, change, re-encode)

    mutating func insert(_ value: UInt32, scratch: inout [UInt32]) -> Bool {
        scratch.removeAll(keepingCapacity: true)
        forEach { scratch.append($0) }
        let position = Self.lowerBound(scratch, value)
        if position < scratch.count && scratch[position] == value { return false }
        scratch.insert(value, at: position)
        encode(scratch[...])
        return true
    }

    mutating func remove(_ value: UInt32, scratch: inout [UInt32]) -> Bool {
        scratch.removeAll(keepingCapacity: true)
        forEach { scratch.append($0) }
        let position = Self.lowerBound(scratch, value)
        guard position < scratch.count && scratch[position] == value else { return false }
        scratch.remove(at: position)
        if scratch.isEmpty { self = RiceBlock() } else { encode(scratch[...]) }
        return true
    }

    func split() -> [RiceBlock] {
        var values: [UInt32] = []
        forEach { values.append($0) }
        let middle = values.count / 2
        var low = RiceBlock(), high = RiceBlock()
        low.encode(values[..<middle])
        high.encode(values[middle...])
        return [low, high]
    }

    private static func lowerBound(_ values: [UInt32], _ value: UInt32) -> Int {
        var low = 0, high = values.count
        while low < high {
            let mid = (low + high) / 2
            if values[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
