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
