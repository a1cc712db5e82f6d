import Foundation

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
