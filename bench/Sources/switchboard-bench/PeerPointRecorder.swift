import CPeerClient
import Histogram

/// The books of one measurement point of `switchboard-bench peer`, kept by the load client's
/// thread: which event each socket got (one bit per socket and event, so duplicates and losses
/// are exact), per-socket order, the latency histogram of the events sent after the warm-up,
/// and frames per 10 ms of receive time (so the delivered rate can be read over any window).
struct PeerPointRecorder: Sendable {
    /// Width of one bucket of `receivedPerBucket`.
    static let bucketNs: UInt64 = 10_000_000

    let point: UInt32
    /// The point's first publish, CLOCK_MONOTONIC; bucket 0 starts here.
    let startNs: UInt64
    /// Events sent at or after this instant count in the latency histogram.
    let latencyFromNs: UInt64
    /// Channel of each socket.
    private let socketChannel: [Int32]
    /// Events the point publishes into each channel.
    private let eventsPerChannel: [Int]
    private let bitOffset: [Int]
    private var bits: [UInt64]
    /// Highest event number each socket has seen (-1: none).
    private var highest: [Int32]

    private(set) var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 300_000_000_000, numberOfSignificantValueDigits: .three)
    private(set) var receivedPerBucket: [Int]
    /// Distinct expected frames (socket, event) received.
    private(set) var distinct = 0
    private(set) var duplicates = 0
    /// Frames whose number was below one the socket had already seen.
    private(set) var orderViolations = 0
    /// Frames of an earlier point (late or replayed).
    private(set) var stale = 0
    /// Frames of a channel the socket is not in, or a number the point never published.
    private(set) var misrouted = 0
    private(set) var lastReceivedNs: UInt64 = 0

    /// `socketChannel[s]`: the channel socket `s` subscribes to; `eventsPerChannel[c]`: how many
    /// events the point publishes to channel `c`; `horizonSeconds`: how long frames are bucketed.
    init(point: UInt32, startNs: UInt64, latencyFromNs: UInt64, socketChannel: [Int32], eventsPerChannel: [Int], horizonSeconds: Double) {
        self.point = point
        self.startNs = startNs
        self.latencyFromNs = latencyFromNs
        self.socketChannel = socketChannel
        self.eventsPerChannel = eventsPerChannel
        var offsets: [Int] = []
        offsets.reserveCapacity(socketChannel.count)
        var words = 0
        for channel in socketChannel {
            offsets.append(words)
            words += (eventsPerChannel[Int(channel)] + 63) / 64
        }
        bitOffset = offsets
        bits = [UInt64](repeating: 0, count: words)
        highest = [Int32](repeating: -1, count: socketChannel.count)
        receivedPerBucket = [Int](repeating: 0, count: Int(horizonSeconds * 1e9 / Double(Self.bucketNs)) + 1)
    }

    /// Frames every socket should get in this point.
    var expected: Int { socketChannel.reduce(0) { $0 + eventsPerChannel[Int($1)] } }

    var lost: Int { expected - distinct }

    mutating func record(_ frames: UnsafeBufferPointer<pc_frame>) {
        for frame in frames {
            guard frame.point == point else {
                stale += 1
                continue
            }
            let socket = Int(frame.socket), number = Int(frame.number)
            guard socket < socketChannel.count, Int32(frame.channel) == socketChannel[socket],
                  number < eventsPerChannel[Int(frame.channel)] else {
                misrouted += 1
                continue
            }
            let word = bitOffset[socket] + number >> 6, mask = UInt64(1) << UInt64(number & 63)
            if bits[word] & mask != 0 {
                duplicates += 1
                continue
            }
            bits[word] |= mask
            distinct += 1
            if Int32(number) < highest[socket] { orderViolations += 1 } else { highest[socket] = Int32(number) }
            if frame.sent_ns >= latencyFromNs, frame.received_ns > frame.sent_ns {
                histogram.record(frame.received_ns - frame.sent_ns)
            }
            if frame.received_ns >= startNs {
                let bucket = Int((frame.received_ns - startNs) / Self.bucketNs)
                if bucket < receivedPerBucket.count { receivedPerBucket[bucket] += 1 }
            }
            lastReceivedNs = max(lastReceivedNs, frame.received_ns)
        }
    }

    /// Frames received between `from` and `to` (CLOCK_MONOTONIC, to 10 ms).
    func received(from: UInt64, to: UInt64) -> Int {
        guard to > from, from >= startNs else { return 0 }
        let first = Int((from - startNs) / Self.bucketNs), last = min(receivedPerBucket.count, Int((to - startNs) / Self.bucketNs))
        return first < last ? receivedPerBucket[first..<last].reduce(0, +) : 0
    }
}
