import Foundation
import NIOConcurrencyHelpers
import ServiceLifecycle
import Synchronization

/// Runs a blocking loop on a thread of its own — for loops that sit in blocking C calls
/// (a JetStream fetch with a timeout, an ordered-consumer read, a Redis poll), which must not
/// occupy the cooperative pool.
///
/// `run` returns when the loop returns. Graceful shutdown (or cancellation) of the calling
/// task raises the loop's `StopSignal`; the loop is expected to notice it within one of its
/// timeouts and return. The thread's exit resumes the waiting task directly: nothing polls.
/// Cancellation additionally stops waiting at once, leaving a thread that is stuck in a C
/// call to finish in the background (the caller has given up on it, e.g. past a shutdown budget).
public enum DedicatedThread {
    public static func run(name: String, _ loop: @escaping @Sendable (StopSignal) -> Void) async {
        let stop = StopSignal()
        let exit = ThreadExit()
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    guard exit.await(continuation) else { return }
                    let thread = Thread {
                        loop(stop)
                        exit.finish()
                    }
                    thread.name = name
                    thread.start()
                }
            } onGracefulShutdown: {
                stop.raise()
            }
        } onCancel: {
            stop.raise()
            exit.finish()
        }
    }
}

/// Asks a blocking loop to wind down; also the loop's pause that ends early when asked.
public final class StopSignal: Sendable {
    private let raised = Atomic<Bool>(false)
    /// `true` once raised; lets `pause` wake at once instead of sleeping out its duration.
    private let condition = ConditionLock(value: false)

    public init() {}

    /// True once `raise()` was called.
    public var isRaised: Bool { raised.load(ordering: .acquiring) }

    public func raise() {
        guard !raised.exchange(true, ordering: .acquiringAndReleasing) else { return }
        condition.lock()
        condition.unlock(withValue: true)
    }

    /// Waits `duration` (a retry back-off, a poll interval) or until raised, whichever comes
    /// first; returns true when raised.
    @discardableResult
    public func pause(_ duration: Duration) -> Bool {
        let (seconds, attoseconds) = duration.components
        let timeout = max(0, Double(seconds) + Double(attoseconds) / 1e18)
        if condition.lock(whenValue: true, timeoutSeconds: timeout) {
            condition.unlock()
            return true
        }
        return isRaised
    }
}

/// The hand-over between a dedicated thread's exit and the task awaiting it: whichever of
/// `await` and `finish` comes second resumes the task, exactly once.
private final class ThreadExit: Sendable {
    private enum Phase {
        case running
        case awaited(CheckedContinuation<Void, Never>)
        case finished
    }

    private let phase = Mutex<Phase>(.running)

    /// Parks `continuation` until `finish`; false (and resumed already) when finished before.
    func await(_ continuation: CheckedContinuation<Void, Never>) -> Bool {
        let parked = phase.withLock { phase -> Bool in
            guard case .running = phase else { return false }
            phase = .awaited(continuation)
            return true
        }
        if !parked { continuation.resume() }
        return parked
    }

    func finish() {
        let waiting = phase.withLock { phase -> CheckedContinuation<Void, Never>? in
            defer { phase = .finished }
            if case .awaited(let continuation) = phase { return continuation }
            return nil
        }
        waiting?.resume()
    }
}
