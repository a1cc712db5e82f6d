import PropertyBased
@testable import RoutingCore
import Testing

@Suite struct RecentVersionsTests {
    /// The obvious implementation: a dictionary of the last `limit` distinct pairs, forgotten
    /// in the order they were first remembered.
    struct Model {
        let limit: Int
        var versions: [UInt64: UInt64] = [:]
        var order: [UInt64] = []

        mutating func accept(channel: UInt32, user: UInt32, version: UInt64) -> Bool {
            let key = UInt64(channel) << 32 | UInt64(user)
            if let known = versions[key] {
                guard version >= known else { return false }
                versions[key] = version
                return true
            }
            if order.count == limit { versions[order.removeFirst()] = nil }
            order.append(key)
            versions[key] = version
            return true
        }
    }

    @Test func agreesWithADictionaryModel() async {
        // Few distinct pairs and a small window: pairs are forgotten, remembered again, and
        // collide in the index often, which exercises the backward-shift deletion.
        await propertyCheck(count: 300, input: Gen.int(in: 0...(1 << 16) - 1).array(of: 0...600)) { operations in
            var recent = RecentVersions(limit: 7)
            var model = Model(limit: 7)
            for operation in operations {
                let channel = UInt32(operation & 0x7), user = UInt32((operation >> 3) & 0x7), version = UInt64(operation >> 6)
                holds(recent.accept(channel: channel, user: user, version: version) == model.accept(channel: channel, user: user, version: version),
                      "pair (\(channel), \(user)) at version \(version)")
            }
        }
    }

    @Test func forgetsTheOldestPairFirst() {
        var recent = RecentVersions(limit: 3)
        for user: UInt32 in 0..<3 { holds(recent.accept(channel: 1, user: user, version: 10)) }
        holds(!recent.accept(channel: 1, user: 0, version: 9))  // still remembered: stale
        holds(recent.accept(channel: 1, user: 3, version: 10))  // forgets user 0
        holds(recent.accept(channel: 1, user: 0, version: 9))   // forgotten: accepted, forgets user 1
        holds(!recent.accept(channel: 1, user: 2, version: 1))  // user 2 is still remembered
        holds(recent.accept(channel: 1, user: 1, version: 1))
    }
}
