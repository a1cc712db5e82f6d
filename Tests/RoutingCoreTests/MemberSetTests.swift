import PropertyBased
import RoutingCore
import SwitchboardHarness
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
        var rng = SplitMix64(seed: 7)
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

    /// The one-pass builder (snapshot loads) must write exactly the bits that appending and
    /// compacting write, over sparse, dense and escape-sized gaps and several blocks.
    @Test func onePassBuildEqualsAppendThenCompact() {
        var rng = SplitMix64(seed: 11)
        for (count, spread) in [(1, 10), (7, 3), (1_024, 2_000), (1_025, 2_000), (5_000, 1_000_000), (3_000, 3), (40, UInt64(UInt32.max / 64))] {
            var values = Set<UInt32>()
            while values.count < count { values.insert(UInt32(truncatingIfNeeded: rng.next() % UInt64(count) * UInt64(spread) + rng.next() % UInt64(spread))) }
            let sorted = values.sorted()
            let onePass = MemberSet(sorted: sorted)
            let appended = MemberSet(sorted: AnySequence(sorted))
            #expect(onePass == appended, "\(count) values spread \(spread)")
            #expect(onePass.values == sorted)
            var grown = onePass  // a one-pass block takes ordinary inserts afterwards
            holds(grown.insert(sorted[0] &+ 1) || sorted.contains(sorted[0] &+ 1))
            #expect(grown.values == Array(Set(sorted + [sorted[0] &+ 1])).sorted())
        }
        // Gaps too long for the block's parameter take the escape code.
        let escapes: [UInt32] = Array(0...1_000) + [4_000_000_000, 4_000_000_002]
        #expect(MemberSet(sorted: escapes) == MemberSet(sorted: AnySequence(escapes)))
        #expect(MemberSet(sorted: escapes).values == escapes)
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

/// `#expect` for conditions that mutate (the macro cannot take mutating calls).
func holds(_ condition: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(condition, comment, sourceLocation: sourceLocation)
}
