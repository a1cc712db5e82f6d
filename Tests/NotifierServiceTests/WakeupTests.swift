import Testing
@testable import NotifierService

/// `Wakeup` is how the presence registrar and the drain wait without polling: a wait ends at
/// a signal or at its deadline, and a signal given before the wait is not lost.
@Suite(.timeLimit(.minutes(1))) struct WakeupTests {
    @Test func signalGivenBeforeTheWaitEndsIt() async {
        let wakeup = Wakeup()
        wakeup.signal()
        await wakeup.wait(until: .now + .seconds(3600))
    }

    @Test func signalFromAnotherTaskEndsAWaitInProgress() async {
        let wakeup = Wakeup()
        async let waited: Void = wakeup.wait(until: .now + .seconds(3600))
        // Whether the wait has begun or not, the signal ends it (an early one is kept).
        wakeup.signal()
        await waited
    }

    @Test func waitEndsAtItsDeadlineWithoutASignal() async {
        let wakeup = Wakeup()
        let deadline = ContinuousClock.now + .milliseconds(50)
        await wakeup.wait(until: deadline)
        #expect(ContinuousClock.now >= deadline)
    }
}
