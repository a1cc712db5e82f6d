import PropertyBased
import RoutingCore
import Testing

@Suite struct MemberSetTests {
    @Test func insertRemoveContainsAtBlockEdges() {
        var set = MemberSet()
        holds(set.insert(10))
        holds(!set.insert(10))
        holds(set.insert(5))
        holds(set.insert(UInt32.max - 1))
        holds(set.insert(0))
        #expect(set.values == [0, 5, 10, UInt32.max - 1])
        #expect(set.contains(5) && !set.contains(6))
        holds(set.remove(0))
        holds(!set.remove(0))
        holds(set.remove(10))
        #expect(set.values == [5, UInt32.max - 1])
        holds(set.remove(5) && set.remove(UInt32.max - 1))
        #expect(set.isEmpty && set.values.isEmpty)
    }

    @Test func largeSetsSplitIntoBlocksAndStaySorted() {
        var set = MemberSet()
        var model = Set<UInt32>()
        var rng = SplitMix(seed: 7)
        for _ in 0..<6_000 {
            let value = UInt32(rng.next() % 40_000)
            holds(set.insert(value) == model.insert(value).inserted)
        }
        for _ in 0..<3_000 {
            let value = UInt32(rng.next() % 40_000)
            holds(set.remove(value) == (model.remove(value) != nil))
        }
        #expect(set.values == model.sorted())
        #expect(Int(set.count) == model.count)
    }

    @Test func denseSetsCostAboutOneBytePerMember() {
        let set = MemberSet(sorted: 0..<100_000)
        #expect(set.byteCount < 40_000, "a fully dense set costs about 2 bits per member")
        #expect(set.values.count == 100_000)
    }

    @Test func matchesASetModelUnderRandomOperations() async {
        // Each operation: value in the low bits, insert (even) or remove (odd) in bit 20.
        await propertyCheck(count: 200, input: Gen.int(in: 0...(1 << 21) - 1).array(of: 0...400)) { operations in
            var set = MemberSet()
            var model = Set<UInt32>()
            for operation in operations {
                let value = UInt32(operation & 0xfffff) * (operation % 3 == 0 ? 4001 : 1)
                if operation & (1 << 20) == 0 {
                    holds(set.insert(value) == model.insert(value).inserted)
                } else {
                    holds(set.remove(value) == (model.remove(value) != nil))
                }
            }
            #expect(set.values == model.sorted())
            for probe in model.prefix(20) { #expect(set.contains(probe)) }
        }
    }
}

/// Deterministic generator for tests that need many values quickly.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// `#expect` for conditions that mutate (the macro cannot take mutating calls).
func holds(_ condition: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(condition, comment, sourceLocation: sourceLocation)
}
