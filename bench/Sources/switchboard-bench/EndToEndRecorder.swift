import Foundation
import Histogram
import Synchronization

/// What the receivers of one design saw in one phase. A recorder is owned by one thread (an
/// event loop, or a raw NATS reader) so the per-event counts need no locks; only the progress
/// counter and the warm-up cut-off are atomics. Recorders are merged after the phase.
///
/// Duplicates are detected per (receiver, channel): events of one channel travel through one
/// partition in order, so an order key (stream seq, or event index) that does not grow is a
/// redelivery. Losses are found against the workload: each event's expected receipts are known.
final class EndToEndRecorder: @unchecked Sendable {
    private(set) var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 300_000_000_000, numberOfSignificantValueDigits: .three)
    /// Receipts per event index of the phase (not counting duplicates).
    private(set) var counts: [UInt16]
    private(set) var duplicates = 0
    private(set) var unparsable = 0
    private(set) var outOfRange = 0
    private var lastOrder: [Int: UInt64] = [:]
    /// Every receipt, duplicates included; read by other threads for progress.
    let received = Atomic<Int>(0)
    /// Latency is recorded only for events sent at or after this instant (warm-up excluded).
    let recordFromNs = Atomic<UInt64>(UInt64.max)

    init(events: Int) {
        counts = [UInt16](repeating: 0, count: events)
    }

    /// One receipt by `receiver` of event `event` (index in the phase) of `channel`.
    @inline(__always)
    func record(receiver: Int, channel: Int, order: UInt64, event: Int, sentNs: UInt64, now: UInt64) {
        received.add(1, ordering: .relaxed)
        let key = receiver << 24 | channel
        if let last = lastOrder[key], order <= last {
            duplicates += 1
            return
        }
        lastOrder[key] = order
        guard event >= 0, event < counts.count else {
            outOfRange += 1
            return
        }
        counts[event] &+= 1
        if sentNs >= recordFromNs.load(ordering: .relaxed) {
            _ = histogram.record(Swift.max(1, now > sentNs ? now - sentNs : 0))
        }
    }

    func unreadable() {
        received.add(1, ordering: .relaxed)
        unparsable += 1
    }

    /// The totals of several recorders (call once their owners are quiet).
    struct Merged {
        var histogram: Histogram<UInt64>
        var counts: [Int]
        var duplicates: Int
        var unparsable: Int
        var outOfRange: Int
        var receipts: Int
    }

    static func merge(_ recorders: [EndToEndRecorder], events: Int) -> Merged {
        var merged = Merged(
            histogram: Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 300_000_000_000, numberOfSignificantValueDigits: .three),
            counts: [Int](repeating: 0, count: events), duplicates: 0, unparsable: 0, outOfRange: 0, receipts: 0)
        for recorder in recorders {
            merged.histogram.add(recorder.histogram)
            for index in 0..<min(events, recorder.counts.count) { merged.counts[index] += Int(recorder.counts[index]) }
            merged.duplicates += recorder.duplicates
            merged.unparsable += recorder.unparsable
            merged.outOfRange += recorder.outOfRange
            merged.receipts += recorder.received.load(ordering: .relaxed)
        }
        return merged
    }
}

/// Byte-level parsing of what the receivers get, without building JSON or Codable trees.
enum EndToEndParse {
    /// The index in `"sw-123"`-style ids: the digits after the last '-'.
    static func eventIndex<C: BidirectionalCollection<UInt8>>(ofID id: C) -> Int? {
        guard let dash = id.lastIndex(of: UInt8(ascii: "-")) else { return nil }
        return number(id[id.index(after: dash)...]).map(Int.init)
    }

    /// The channel index in `"ch45"`.
    static func channelIndex<C: Collection<UInt8>>(_ id: C) -> Int? {
        guard id.count > 2, id.first == UInt8(ascii: "c") else { return nil }
        return number(id.dropFirst(2)).map(Int.init)
    }

    /// Leading decimal digits as a number (nil when there are none).
    static func number<C: Collection<UInt8>>(_ bytes: C) -> UInt64? {
        var value: UInt64 = 0
        var digits = 0
        for byte in bytes {
            guard byte >= 48, byte <= 57 else { break }
            value = value &* 10 &+ UInt64(byte - 48)
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    struct EventFrame {
        var channel: Int
        var seq: UInt64
        var event: Int
        var sentNs: UInt64
    }

    private static let typeEvent = Array(#"{"type":"event""#.utf8)
    private static let channelKey = Array(#""channel":""#.utf8)
    private static let seqKey = Array(#""seq":"#.utf8)
    private static let idKey = Array(#""id":""#.utf8)
    private static let textKey = Array(#""text":"t="#.utf8)

    /// `{"type":"event","channel":"ch45","seq":42,"event":{"id":"sw-7",…,"text":"t=<ns> …"}}`
    /// as written by the notifier; nil for any other frame (hello, pong, …).
    static func eventFrame(_ bytes: UnsafeRawBufferPointer) -> EventFrame? {
        guard bytes.count > typeEvent.count, bytes.starts(with: typeEvent) else { return nil }
        guard let channelAt = find(channelKey, in: bytes, from: typeEvent.count),
              let channel = channelIndex(bytes[channelAt...].prefix { $0 != UInt8(ascii: "\"") }),
              let seqAt = find(seqKey, in: bytes, from: channelAt),
              let seq = number(bytes[seqAt...]),
              let idAt = find(idKey, in: bytes, from: seqAt),
              let event = eventIndex(ofID: bytes[idAt...].prefix { $0 != UInt8(ascii: "\"") }),
              let textAt = find(textKey, in: bytes, from: idAt),
              let sentNs = number(bytes[textAt...]) else { return nil }
        return EventFrame(channel: channel, seq: seq, event: event, sentNs: sentNs)
    }

    /// The index just past the first occurrence of `needle` at or after `from`.
    private static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard let first = needle.first, bytes.count >= needle.count else { return nil }
        var index = from
        let last = bytes.count - needle.count
        while index <= last {
            if bytes[index] == first {
                var matched = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    matched = false
                    break
                }
                if matched { return index + needle.count }
            }
            index += 1
        }
        return nil
    }
}
