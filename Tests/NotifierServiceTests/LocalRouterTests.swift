import Testing
@testable import NotifierService

final class FakeSocket {
    let name: String
    init(_ name: String) { self.name = name }
}

@Suite struct LocalRouterTests {
    let t0 = ContinuousClock.now

    @Test func firstSocketOfAUserAllocatesASlotAndLaterOnesShareIt() {
        var router = LocalRouter<FakeSocket>(reuseDelay: .seconds(30))
        let phone = FakeSocket("phone"), laptop = FakeSocket("laptop"), other = FakeSocket("other")
        let a = router.add(phone, user: "alice", now: t0)
        let b = router.add(laptop, user: "alice", now: t0)
        let c = router.add(other, user: "bob", now: t0)
        #expect(a.isFirst && !b.isFirst && c.isFirst)
        #expect(a.slot == b.slot)
        #expect(a.slot != c.slot)
        #expect(router.sockets(inSlot: a.slot).map(\.name) == ["phone", "laptop"])
        #expect(router.userCount == 2 && router.socketCount == 3)
        #expect(router.slot(of: "alice") == a.slot)
        #expect(router.user(inSlot: c.slot) == "bob")
    }

    @Test func slotIsReleasedOnlyWhenTheLastSocketCloses() {
        var router = LocalRouter<FakeSocket>()
        let phone = FakeSocket("phone"), laptop = FakeSocket("laptop")
        let slot = router.add(phone, user: "alice", now: t0).slot
        _ = router.add(laptop, user: "alice", now: t0)
        let first = router.remove(phone, user: "alice", now: t0)
        #expect(first?.isLast == false)
        #expect(router.sockets(inSlot: slot).map(\.name) == ["laptop"])
        let last = router.remove(laptop, user: "alice", now: t0)
        #expect(last?.isLast == true && last?.slot == slot)
        #expect(router.sockets(inSlot: slot).isEmpty)
        #expect(router.slot(of: "alice") == nil)
        #expect(router.userCount == 0 && router.socketCount == 0)
    }

    @Test func removingAnUnknownSocketChangesNothing() {
        var router = LocalRouter<FakeSocket>()
        _ = router.add(FakeSocket("a"), user: "alice", now: t0)
        #expect(router.remove(FakeSocket("stranger"), user: "alice", now: t0) == nil)
        #expect(router.remove(FakeSocket("stranger"), user: "nobody", now: t0) == nil)
        #expect(router.socketCount == 1)
    }

    @Test func releasedSlotsAreReusedDenselyButOnlyAfterTheDelay() {
        var router = LocalRouter<FakeSocket>(reuseDelay: .seconds(30))
        let sockets = (0..<3).map { FakeSocket("s\($0)") }
        for (i, s) in sockets.enumerated() { _ = router.add(s, user: "u\(i)", now: t0) }
        _ = router.remove(sockets[1], user: "u1", now: t0)
        // Too early: a delivery planned for u1 may still be in flight; take a fresh slot.
        #expect(router.add(FakeSocket("x"), user: "early", now: t0 + .seconds(1)).slot == 3)
        // After the delay the released slot 1 comes back before the table grows.
        #expect(router.add(FakeSocket("y"), user: "late", now: t0 + .seconds(31)).slot == 1)
        #expect(router.add(FakeSocket("z"), user: "next", now: t0 + .seconds(31)).slot == 4)
        #expect(router.slotCapacity == 5)
    }

    @Test func unknownSlotsHaveNoSockets() {
        let router = LocalRouter<FakeSocket>()
        #expect(router.sockets(inSlot: 0).isEmpty)
        #expect(!router.forEachSocket(inSlot: 12345) { _ in })
    }

    @Test func registrationsListEveryOnlineUserOnce() {
        var router = LocalRouter<FakeSocket>()
        _ = router.add(FakeSocket("a1"), user: "alice", now: t0)
        _ = router.add(FakeSocket("a2"), user: "alice", now: t0)
        _ = router.add(FakeSocket("b"), user: "bob", now: t0)
        let registrations = router.registrations().sorted { $0.userID < $1.userID }
        #expect(registrations.map(\.userID) == ["alice", "bob"])
        #expect(router.allSockets().count == 3)
    }

    @Test func matchesANaiveModelUnderRandomConnectsAndDisconnects() {
        var router = LocalRouter<FakeSocket>(reuseDelay: .zero)
        var model: [String: [FakeSocket]] = [:]
        var rng = SystemRandomNumberGenerator()
        var open: [(String, FakeSocket)] = []
        for step in 0..<5000 {
            if open.isEmpty || Int.random(in: 0..<3, using: &rng) > 0 {
                let user = "u\(Int.random(in: 0..<50, using: &rng))"
                let socket = FakeSocket("s\(step)")
                let result = router.add(socket, user: user, now: t0)
                #expect(result.isFirst == (model[user]?.isEmpty ?? true))
                model[user, default: []].append(socket)
                open.append((user, socket))
            } else {
                let (user, socket) = open.remove(at: Int.random(in: 0..<open.count, using: &rng))
                let result = router.remove(socket, user: user, now: t0)
                model[user]!.removeAll { $0 === socket }
                #expect(result?.isLast == model[user]!.isEmpty)
                if model[user]!.isEmpty { model[user] = nil }
            }
        }
        #expect(router.userCount == model.count)
        var slots = Set<UInt32>()
        for (user, sockets) in model {
            let slot = router.slot(of: user)!
            #expect(slots.insert(slot).inserted)
            #expect(Set(router.sockets(inSlot: slot).map(ObjectIdentifier.init)) == Set(sockets.map(ObjectIdentifier.init)))
        }
        // Dense: with immediate reuse the table never grows past the peak of online users.
        #expect(router.slotCapacity <= 50)
    }
}
