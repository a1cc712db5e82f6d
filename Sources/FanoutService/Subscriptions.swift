import NATSClient
import ServiceLifecycle
import Synchronization

/// The core-NATS subscriptions of a handler-driven service (typing relay, inspection): made
/// during warm-up, held until graceful shutdown, then unsubscribed.
final class Subscriptions: Sendable {
    private let held = Mutex<[NATSSubscription]>([])

    func add(_ subscription: NATSSubscription) {
        held.withLock { $0.append(subscription) }
    }

    /// Returns once graceful shutdown (or cancellation) came and every subscription is closed.
    func holdUntilGracefulShutdown() async {
        try? await gracefulShutdown()
        let subscriptions = held.withLock { held in
            defer { held.removeAll() }
            return held
        }
        subscriptions.forEach { $0.unsubscribe() }
    }
}
