import Testing
@testable import NotifierService

@Suite struct TokenBucketTests {
    @Test func allowsTheBurstThenRefusesUntilTokensRefill() {
        var bucket = TokenBucket(rate: 10, burst: 3, nowNanos: 0)
        #expect(take(&bucket, 0))
        #expect(take(&bucket, 0))
        #expect(take(&bucket, 0))
        #expect(!take(&bucket, 0))
        // 10 per second: one token after 100 ms, not before.
        #expect(!take(&bucket, 50_000_000))
        #expect(take(&bucket, 100_000_000))
        #expect(!take(&bucket, 100_000_000))
    }

    @Test func neverBanksMoreThanTheBurst() {
        var bucket = TokenBucket(rate: 1000, burst: 2, nowNanos: 0)
        let later: UInt64 = 60_000_000_000
        #expect(take(&bucket, later))
        #expect(take(&bucket, later))
        #expect(!take(&bucket, later))
    }

    @Test func sustainedRateIsHonouredOverTime() {
        var bucket = TokenBucket(rate: 20, burst: 1, nowNanos: 0)
        var taken = 0
        // Try every millisecond for 10 seconds.
        for ms in 0..<10_000 where bucket.take(nowNanos: UInt64(ms) * 1_000_000) { taken += 1 }
        #expect((199...201).contains(taken))
    }

    @Test func aClockGoingBackwardsDoesNotMintTokens() {
        var bucket = TokenBucket(rate: 1, burst: 1, nowNanos: 5_000_000_000)
        #expect(take(&bucket, 5_000_000_000))
        #expect(!take(&bucket, 1_000_000_000))
    }
}

/// `#expect` cannot call a mutating method on a local; this does it outside the macro.
private func take(_ bucket: inout TokenBucket, _ nowNanos: UInt64) -> Bool {
    bucket.take(nowNanos: nowNanos)
}
