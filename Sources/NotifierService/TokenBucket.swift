/// A token bucket: `rate` tokens per second, at most `burst` banked. Used per socket to
/// bound inbound messages (a flooding client is closed, not queued).
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var lastNanos: UInt64

    /// Starts full at `nowNanos` (a monotonic clock reading in nanoseconds).
    public init(rate: Double, burst: Double, nowNanos: UInt64) {
        precondition(rate > 0 && burst >= 1, "a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.lastNanos = nowNanos
    }

    /// Takes one token if there is one.
    public mutating func take(nowNanos: UInt64) -> Bool {
        if nowNanos > lastNanos {
            tokens = min(burst, tokens + Double(nowNanos - lastNanos) * rate / 1e9)
            lastNanos = nowNanos
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
