import Synchronization

/// Lets one task wait for "something changed" with a deadline: `wait(until:)` returns at the
/// first `signal()` since the previous wait, or at the deadline. A signal with nobody waiting
/// is kept for the next wait, so none is lost between a check and the wait that follows it.
/// Waiters re-check their condition after waking (a wait may end early, never late).
final class Wakeup: Sendable {
    private struct State {
        var signaled = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Numbers the waits, so that a deadline timer only ends the wait it was started for.
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())

    init() {}

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.signaled = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// One waiter at a time.
    func wait(until deadline: ContinuousClock.Instant) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let generation = state.withLock { state -> UInt64? in
                if state.signaled {
                    state.signaled = false
                    return nil
                }
                state.waiter = continuation
                state.generation &+= 1
                return state.generation
            }
            guard let generation else { return continuation.resume() }
            Task { [self] in
                try? await Task.sleep(until: deadline)
                let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard state.generation == generation, let waiter = state.waiter else { return nil }
                    state.waiter = nil
                    return waiter
                }
                waiter?.resume()
            }
        }
    }
}
