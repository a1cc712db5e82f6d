/// A compressed sorted set of user ids: the members of one channel.
///
/// Values are kept sorted in blocks of at most `maxBlockCount`. A block stores its first
/// value, then each next value's gap (minus one) Rice-coded with the block's own parameter
/// `k`: the gap's high bits in unary, its low `k` bits as they are. With `k` near
/// log2(mean gap), a member costs about log2(mean gap) + 1.5 bits — ~2 bits in a dense
/// channel, ~10 bits when members are 1 in 300 users — instead of a varint's 8 or 16.
///
/// Appends of a new largest value (bulk loads, replays) write bits in place; other inserts
/// and removals re-encode one block (bounded work). A set that fits one block (nearly every
/// channel) is a single heap object.
public struct MemberSet: Sendable, Equatable {
    /// Bounds the work of a non-append insert or removal (one block decoded and re-encoded).
    static let maxBlockCount = 1024

    public private(set) var count: UInt32 = 0
    /// The largest value, so ascending inserts append without decoding.
    private var largest: UInt32 = 0
    /// The only block while `blocks` is empty (the common, small case).
    private var single = RiceBlock()
    private var blocks: [RiceBlock] = []

    public init() {}

    public init(sorted values: some Sequence<UInt32>) {
        for value in values { append(value) }
        compact()
    }

    /// From strictly ascending values, each block encoded once with its best parameter
    /// (snapshot loads build millions of members this way).
    public init(sorted values: [UInt32]) {
        guard let last = values.last else { return }
        count = UInt32(values.count)
        largest = last
        if values.count <= Self.maxBlockCount {
            single.encode(values[...])
        } else {
            blocks = stride(from: 0, to: values.count, by: Self.maxBlockCount).map { start in
                var block = RiceBlock()
                block.encode(values[start..<min(start + Self.maxBlockCount, values.count)])
                return block
            }
        }
    }

    public var isEmpty: Bool { count == 0 }

    /// Heap and inline bytes of this set (array headers included).
    public var byteCount: Int {
        if blocks.isEmpty { return MemoryLayout<MemberSet>.stride + single.heapBytes }
        return MemoryLayout<MemberSet>.stride + 32 + blocks.capacity * MemoryLayout<RiceBlock>.stride
            + blocks.reduce(0) { $0 + $1.heapBytes }
    }

    /// Bytes of coded gaps alone (what the encoding costs, without containers).
    public var payloadBytes: Int {
        blocks.isEmpty ? single.payloadBytes : blocks.reduce(0) { $0 + $1.payloadBytes }
    }

    public func contains(_ value: UInt32) -> Bool {
        guard count > 0, value <= largest else { return false }
        return blocks.isEmpty ? single.contains(value) : blocks[blockIndex(for: value)].contains(value)
    }

    /// Inserts `value`; returns false when it was already present.
    @discardableResult
    public mutating func insert(_ value: UInt32) -> Bool {
        if count == 0 || value > largest {
            append(value)
            return true
        }
        var scratch: [UInt32] = []
        if blocks.isEmpty {
            guard single.insert(value, scratch: &scratch) else { return false }
            if single.count > Self.maxBlockCount { blocks = single.split(); single = RiceBlock() }
        } else {
            let index = blockIndex(for: value)
            guard blocks[index].insert(value, scratch: &scratch) else { return false }
            if blocks[index].count > Self.maxBlockCount { blocks.replaceSubrange(index...index, with: blocks[index].split()) }
        }
        count += 1
        return true
    }

    /// Removes `value`; returns false when it was absent.
    @discardableResult
    public mutating func remove(_ value: UInt32) -> Bool {
        guard count > 0, value <= largest else { return false }
        var scratch: [UInt32] = []
        if blocks.isEmpty {
            guard single.remove(value, scratch: &scratch) else { return false }
        } else {
            let index = blockIndex(for: value)
            guard blocks[index].remove(value, scratch: &scratch) else { return false }
            if blocks[index].count == 0 { blocks.remove(at: index) }
            if blocks.count == 1 { single = blocks[0]; blocks = [] }
        }
        count -= 1
        if count == 0 {
            single = RiceBlock()
            largest = 0
        } else if value == largest {
            largest = blocks.isEmpty ? single.last : blocks[blocks.count - 1].last
        }
        return true
    }

    /// Calls `body` with every value in ascending order. No allocation.
    @inline(__always)
    public func forEach(_ body: (UInt32) throws -> Void) rethrows {
        guard count > 0 else { return }
        if blocks.isEmpty { return try single.forEach(body) }
        for block in blocks { try block.forEach(body) }
    }

    public var values: [UInt32] {
        var values: [UInt32] = []
        values.reserveCapacity(Int(count))
        forEach { values.append($0) }
        return values
    }

    /// Re-encodes every block changed since its last full encoding with its best parameter,
    /// dropping growth slack (after a bulk load).
    public mutating func compact() {
        var scratch: [UInt32] = []
        if blocks.isEmpty {
            if count > 0 && !single.isCompact { single.reencode(scratch: &scratch) }
        } else {
            for index in blocks.indices where !blocks[index].isCompact { blocks[index].reencode(scratch: &scratch) }
        }
    }

    /// Appends `value`, which must be greater than every value in the set.
    public mutating func append(_ value: UInt32) {
        defer {
            count += 1
            largest = value
        }
        if count == 0 {
            single = RiceBlock(first: value)
            return
        }
        precondition(value > largest, "MemberSet.append needs ascending values")
        if blocks.isEmpty {
            if single.count < Self.maxBlockCount {
                single.append(value, after: largest)
            } else {
                blocks = [single, RiceBlock(first: value, parameter: single.parameter)]
                single = RiceBlock()
            }
        } else {
            let last = blocks.count - 1
            if blocks[last].count < Self.maxBlockCount {
                blocks[last].append(value, after: largest)
            } else {
                blocks.append(RiceBlock(first: value, parameter: blocks[last].parameter))
            }
        }
    }

    /// The block whose range holds `value`: the last one starting at or below it.
    private func blockIndex(for value: UInt32) -> Int {
        var low = 0, high = blocks.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if blocks[mid].first <= value { low = mid } else { high = mid - 1 }
        }
        return low
    }
}

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

/// Reads a little-endian bit stream through a 64-bit window. Reads past the end give zeros
/// (only self-written streams are read, and their lengths are known).
struct BitReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var nextByte = 0
    private var window: UInt64 = 0
    private var available: UInt64 = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    @inline(__always)
    private mutating func refill() {
        while available <= 56 {
            let byte: UInt64 = nextByte < bytes.count ? UInt64(bytes[nextByte]) : 0
            window |= byte << available
            available += 8
            nextByte += 1
        }
    }

    /// Counts zero bits up to `limit`; consumes them and, below the limit, the one after.
    @inline(__always)
    mutating func countZerosThenSkipOne(limit: UInt32) -> UInt32 {
        refill()
        let zeros = UInt32(min(UInt64(window.trailingZeroBitCount), UInt64(limit)))
        if zeros == limit {
            window >>= UInt64(limit)
            available -= UInt64(limit)
        } else {
            window >>= UInt64(zeros + 1)
            available -= UInt64(zeros + 1)
        }
        return zeros
    }

    @inline(__always)
    mutating func read(_ count: UInt64) -> UInt64 {
        guard count > 0 else { return 0 }
        refill()
        let value = window & ((1 << count) - 1)
        window >>= count
        available -= count
        return value
    }
}

extension Double {
    var log2Floor: Int { Int(Foundation.log2(self).rounded(.down)) }
}

import Foundation

/// Writes bits least significant first into a buffer sized in advance (see `RiceBlock.encode`).
struct BitWriter {
    private let out: UnsafeMutableBufferPointer<UInt8>
    private var position = 0
    private var pending: UInt64 = 0
    private var pendingBits: UInt32 = 0

    init(_ out: UnsafeMutableBufferPointer<UInt8>) { self.out = out }

    /// Appends the low `count` (≤ 56) bits of `value`.
    @inline(__always)
    mutating func write(_ value: UInt64, count: UInt32) {
        pending |= value << UInt64(pendingBits)
        pendingBits += count
        while pendingBits >= 8 {
            out[position] = UInt8(truncatingIfNeeded: pending)
            position += 1
            pending >>= 8
            pendingBits -= 8
        }
    }

    mutating func flush() {
        if pendingBits > 0 { out[position] = UInt8(truncatingIfNeeded: pending) }
    }
}
