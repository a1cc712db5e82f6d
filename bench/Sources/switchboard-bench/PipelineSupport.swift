import Foundation
import Histogram
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Plumbing for `switchboard-bench pipeline`: its errors, the monotonic clock and the latency
// sinks the inbox subscribers write into (processes and ports come from SwitchboardHarness).

enum PipelineError: Error, CustomStringConvertible {
    case setup(String)
    case timeout(String)

    var description: String {
        switch self {
        case .setup(let what): "pipeline bench set-up failed: \(what)"
        case .timeout(let what): "pipeline bench timed out: \(what)"
        }
    }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC), comparable across the threads of this process.
@inline(__always)
func pipelineNowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Where an inbox (or relay) subscriber records what it receives: counts, first/last receive
/// times, and publish→receive latency of events sent inside the measurement window.
final class PipelineSink: Sendable {
    private let histogram = Mutex(Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three))
    let messages = Atomic<Int>(0)
    let undecodable = Atomic<Int>(0)
    let firstReceiveNs = Atomic<UInt64>(UInt64.max)
    let lastReceiveNs = Atomic<UInt64>(0)
    /// Only events sent at or after this instant are recorded (warm-up excluded).
    let recordFromNs = Atomic<UInt64>(UInt64.max)

    func received(at now: UInt64, sentNs: UInt64?) {
        messages.add(1, ordering: .relaxed)
        _ = firstReceiveNs.compareExchange(expected: UInt64.max, desired: now, ordering: .relaxed)
        lastReceiveNs.store(now, ordering: .relaxed)
        guard let sentNs else {
            undecodable.add(1, ordering: .relaxed)
            return
        }
        if sentNs >= recordFromNs.load(ordering: .relaxed) {
            let latency = now > sentNs ? now - sentNs : 0
            histogram.withLock { _ = $0.record(Swift.max(1, latency)) }
        }
    }

    /// Counts a message without looking inside (throughput phases).
    func counted(at now: UInt64) {
        messages.add(1, ordering: .relaxed)
        _ = firstReceiveNs.compareExchange(expected: UInt64.max, desired: now, ordering: .relaxed)
        lastReceiveNs.store(now, ordering: .relaxed)
    }

    var latencies: Histogram<UInt64> { histogram.withLock { $0 } }
}
