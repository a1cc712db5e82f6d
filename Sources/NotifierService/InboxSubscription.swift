import NATSClient
import NIOPosix
import ServiceLifecycle
import SwitchboardContracts

/// The notifier's one NATS subscription, `notify.inbox.<instance>`: made (and flushed, so
/// the server has it) before the listener opens, held until graceful shutdown.
final class InboxSubscription: Service, Sendable {
    private let subscription: NATSSubscription

    private init(subscription: NATSSubscription) {
        self.subscription = subscription
    }

    /// Subscribes `dispatcher` to the inbox of `instanceID`; the blocking calls run on the
    /// process's thread pool.
    static func subscribe(_ nats: NATSConnection, instanceID: String, dispatcher: InboxDispatcher) async throws -> InboxSubscription {
        try await NIOThreadPool.singleton.runIfActive {
            let subscription = try nats.subscribe(Subjects.inbox(instance: instanceID)) { message in
                dispatcher.dispatch(kind: message.headers[InboxKind.header], payload: message.payload)
            }
            try nats.flush(timeout: .seconds(5))
            return InboxSubscription(subscription: subscription)
        }
    }

    func run() async {
        try? await gracefulShutdown()
        let subscription = subscription
        _ = try? await NIOThreadPool.singleton.runIfActive { subscription.unsubscribe() }
    }
}
