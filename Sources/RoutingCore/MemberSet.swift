/// A compressed sorted set of user ids: the members of one channel.
///
/// Values are kept sorted in blocks; a block stores its first value and then each next
/// value as a varint of `gap - 1`. Dense channels cost about one byte per member, sparse
/// ones two or three. Blocks are capped at `maxBlockBytes` so an insert or removal rewrites
/// at most one small block, and a set that fits one block (nearly every channel) costs a
/// single heap object.
public struct MemberSet: Sendable, Equatable {
    /// Bounds the bytes moved by one insert or removal (and the slack of one block).
    static let maxBlockBytes = 1024

    struct Block: Sendable, Equatable {
        var first: UInt32
        var gaps: [UInt8]
    }

    public private(set) var count: UInt32 = 0
    /// The largest value, kept so that ascending inserts (bulk loads, replays of new users)
    /// append without decoding a block.
    private var largest: UInt32 = 0
    /// The only block while `blocks` is empty (the common, small case).
    private var single = Block(first: 0, gaps: [])
    private var blocks: [Block] = []

    public init() {}

    public init(sorted values: some Sequence<UInt32>) {
        for value in values { append(value) }
        compact()
    }

    public var isEmpty: Bool { count == 0 }

    /// Heap and inline bytes of this set (array headers included).
    public var byteCount: Int {
        if blocks.isEmpty { return MemoryLayout<MemberSet>.stride + Self.arrayBytes(single.gaps) }
        return MemoryLayout<MemberSet>.stride + 32 + blocks.capacity * MemoryLayout<Block>.stride
            + blocks.reduce(0) { $0 + Self.arrayBytes($1.gaps) }
    }

    private static func arrayBytes(_ array: [UInt8]) -> Int { array.capacity == 0 ? 0 : 32 + array.capacity }

    public func contains(_ value: UInt32) -> Bool {
        guard count > 0 else { return false }
        if blocks.isEmpty { return Self.contains(value, in: single) }
        return Self.contains(value, in: blocks[blockIndex(for: value)])
    }

    /// Inserts `value`; returns false when it was already present.
    @discardableResult
    public mutating func insert(_ value: UInt32) -> Bool {
        if count == 0 || value > largest {
            append(value)
            return true
        }
        if blocks.isEmpty {
            guard Self.insert(value, into: &single) else { return false }
            count += 1
            largest = max(largest, value)
            if single.gaps.count > Self.maxBlockBytes {
                blocks = Self.split(single)
                single = Block(first: 0, gaps: [])
            }
            return true
        }
        let index = blockIndex(for: value)
        guard Self.insert(value, into: &blocks[index]) else { return false }
        count += 1
        if blocks[index].gaps.count > Self.maxBlockBytes {
            blocks.replaceSubrange(index...index, with: Self.split(blocks[index]))
        }
        return true
    }

    /// Removes `value`; returns false when it was absent.
    @discardableResult
    public mutating func remove(_ value: UInt32) -> Bool {
        guard count > 0, value <= largest else { return false }
        defer { if value == largest && count > 0 { largest = lastValue() } }
        if blocks.isEmpty {
            guard Self.remove(value, from: &single) else { return false }
            count -= 1
            if count == 0 { single = Block(first: 0, gaps: []); largest = 0 }
            return true
        }
        let index = blockIndex(for: value)
        let wasSingleValue = blocks[index].gaps.isEmpty
        guard Self.remove(value, from: &blocks[index]) else { return false }
        count -= 1
        if wasSingleValue { blocks.remove(at: index) }
        if blocks.count == 1 {
            single = blocks[0]
            blocks = []
        }
        return true
    }

    /// Calls `body` with every value in ascending order. No allocation.
    @inline(__always)
    public func forEach(_ body: (UInt32) throws -> Void) rethrows {
        guard count > 0 else { return }
        if blocks.isEmpty { return try Self.forEach(in: single, body) }
        for block in blocks { try Self.forEach(in: block, body) }
    }

    public var values: [UInt32] {
        var values: [UInt32] = []
        values.reserveCapacity(Int(count))
        forEach { values.append($0) }
        return values
    }

    /// Drops growth slack from every block (after a bulk load).
    public mutating func compact() {
        if blocks.isEmpty {
            single.gaps = Self.exact(single.gaps)
        } else {
            blocks = blocks.map { Block(first: $0.first, gaps: Self.exact($0.gaps)) }
        }
    }

    private static func exact(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.capacity > bytes.count else { return bytes }
        var copy: [UInt8] = []
        copy.reserveCapacity(bytes.count)
        copy.append(contentsOf: bytes)
        return copy
    }

    // MARK: building in order

    /// Appends `value`, which must be greater than every value in the set (bulk loads).
    public mutating func append(_ value: UInt32) {
        defer {
            count += 1
            largest = value
        }
        if count == 0 {
            single = Block(first: value, gaps: [])
            return
        }
        precondition(value > largest, "MemberSet.append needs ascending values")
        if blocks.isEmpty {
            if single.gaps.count >= Self.maxBlockBytes {
                blocks = [single, Block(first: value, gaps: [])]
                single = Block(first: 0, gaps: [])
            } else {
                Varint.append(value - largest - 1, to: &single.gaps)
            }
        } else {
            let lastIndex = blocks.count - 1
            if blocks[lastIndex].gaps.count >= Self.maxBlockBytes {
                blocks.append(Block(first: value, gaps: []))
            } else {
                Varint.append(value - largest - 1, to: &blocks[lastIndex].gaps)
            }
        }
    }

    private func lastValue() -> UInt32 {
        blocks.isEmpty ? Self.last(of: single) : Self.last(of: blocks[blocks.count - 1])
    }

    // MARK: blocks

    /// The block whose range holds `value`: the last one starting at or below it.
    private func blockIndex(for value: UInt32) -> Int {
        var low = 0, high = blocks.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if blocks[mid].first <= value { low = mid } else { high = mid - 1 }
        }
        return low
    }

    private static func forEach(in block: Block, _ body: (UInt32) throws -> Void) rethrows {
        var current = block.first
        try body(current)
        try block.gaps.withUnsafeBufferPointer { gaps in
            var offset = 0
            while offset < gaps.count {
                current &+= Varint.decode(gaps, &offset) &+ 1
                try body(current)
            }
        }
    }

    private static func last(of block: Block) -> UInt32 {
        var last = block.first
        forEach(in: block) { last = $0 }
        return last
    }

    private static func contains(_ value: UInt32, in block: Block) -> Bool {
        if value <= block.first { return value == block.first }
        return block.gaps.withUnsafeBufferPointer { gaps in
            var current = block.first, offset = 0
            while offset < gaps.count {
                current &+= Varint.decode(gaps, &offset) &+ 1
                if current >= value { return current == value }
            }
            return false
        }
    }

    private static func insert(_ value: UInt32, into block: inout Block) -> Bool {
        if value == block.first { return false }
        if value < block.first {
            block.gaps.insert(contentsOf: Varint.encode(block.first - value - 1), at: 0)
            block.first = value
            return true
        }
        // Find the gap that spans `value`: (previous, next) with previous < value <= next.
        var previous = block.first
        var found: (offset: Int, length: Int, next: UInt32)?
        block.gaps.withUnsafeBufferPointer { gaps in
            var offset = 0
            while offset < gaps.count {
                let start = offset
                let next = previous &+ Varint.decode(gaps, &offset) &+ 1
                if next >= value {
                    found = (start, offset - start, next)
                    return
                }
                previous = next
            }
        }
        guard let found else {
            Varint.append(value - previous - 1, to: &block.gaps)
            return true
        }
        if found.next == value { return false }
        var replacement = Varint.encode(value - previous - 1)
        Varint.append(found.next - value - 1, to: &replacement)
        block.gaps.replaceSubrange(found.offset..<(found.offset + found.length), with: replacement)
        return true
    }

    private static func remove(_ value: UInt32, from block: inout Block) -> Bool {
        if value < block.first { return false }
        if value == block.first {
            guard !block.gaps.isEmpty else { return true }  // the caller drops the block
            var offset = 0
            let gap = block.gaps.withUnsafeBufferPointer { Varint.decode($0, &offset) }
            block.first = block.first &+ gap &+ 1
            block.gaps.removeSubrange(0..<offset)
            return true
        }
        var previous = block.first
        var found: (offset: Int, length: Int, following: (length: Int, gap: UInt32)?)?
        block.gaps.withUnsafeBufferPointer { gaps in
            var offset = 0
            while offset < gaps.count {
                let start = offset
                let next = previous &+ Varint.decode(gaps, &offset) &+ 1
                if next == value {
                    var following: (Int, UInt32)?
                    if offset < gaps.count {
                        let followingStart = offset
                        let gap = Varint.decode(gaps, &offset)
                        following = (offset - followingStart, gap)
                    }
                    found = (start, offset - start - (following?.0 ?? 0), following)
                    return
                }
                if next > value { return }
                previous = next
            }
        }
        guard let found else { return false }
        if let following = found.following {
            // previous → value → after becomes previous → after.
            let after = value &+ following.gap &+ 1
            let merged = Varint.encode(after - previous - 1)
            block.gaps.replaceSubrange(found.offset..<(found.offset + found.length + following.length), with: merged)
        } else {
            block.gaps.removeSubrange(found.offset..<(found.offset + found.length))
        }
        return true
    }

    private static func split(_ block: Block) -> [Block] {
        var values: [UInt32] = []
        forEach(in: block) { values.append($0) }
        let middle = values.count / 2
        return [encode(values[..<middle]), encode(values[middle...])]
    }

    private static func encode(_ values: ArraySlice<UInt32>) -> Block {
        var block = Block(first: values.first!, gaps: [])
        block.gaps.reserveCapacity(values.count * 2)
        var previous = block.first
        for value in values.dropFirst() {
            Varint.append(value - previous - 1, to: &block.gaps)
            previous = value
        }
        return block
    }
}
