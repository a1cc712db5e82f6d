import Logging
import NATSClient
import NIOCore
import NIOPosix
import ServiceLifecycle
import SwitchboardContracts

/// The notifier's inbox, `notify.inbox.<instance>`: subscribed (and confirmed by the server)
/// before the listener opens, held until graceful shutdown. Read on an event loop over a
/// connection of its own (`InboxConnection`) where the NATS settings allow it, else through
/// nats.c's subscription.
final class InboxSubscription: Service, Sendable {
    private enum Reader {
        case eventLoop(InboxConnection)
        case natsC(NATSSubscription)
    }

    private let reader: Reader

    private init(reader: Reader) {
        self.reader = reader
    }

    /// True while deliveries can arrive (for readiness).
    var isConnected: Bool {
        switch reader {
        case .eventLoop(let connection): connection.isConnected
        case .natsC: true  // nats.c's connection is checked on its own
        }
    }

    /// True when nats.c's subscription reads the inbox.
    var readsThroughNATSC: Bool {
        if case .natsC = reader { return true }
        return false
    }

    /// Subscribes `dispatcher` to the inbox of `instanceID`, read on `loop`; `onReconnect` is
    /// called when the event loop's connection was lost and is back. The blocking calls run on
    /// the process's thread pool.
    static func subscribe(
        _ nats: NATSConnection, instanceID: String, dispatcher: InboxDispatcher, loop: any EventLoop,
        onReconnect: @escaping @Sendable () -> Void, logger: Logger
    ) async throws -> InboxSubscription {
        let subject = Subjects.inbox(instance: instanceID)
        do {
            let connection = try await InboxConnection.open(nats: nats, subject: subject, loop: loop, dispatcher: dispatcher, onReconnect: onReconnect, logger: logger)
            logger.info("notifier inbox reads on an event loop over a connection of its own", metadata: ["subject": "\(subject)"])
            return InboxSubscription(reader: .eventLoop(connection))
        } catch NATSError.unsupported(let what) {
            logger.info("notifier inbox reads through nats.c", metadata: ["subject": "\(subject)", "reason": "\(what) is nats.c's alone"])
        }
        return try await NIOThreadPool.singleton.runIfActive {
            let subscription = try nats.subscribe(subject) { message in
                dispatcher.dispatch(kind: message.headers[InboxKind.header], payload: message.payload)
            }
            try nats.flush(timeout: .seconds(5))
            return InboxSubscription(reader: .natsC(subscription))
        }
    }

    func run() async {
        try? await gracefulShutdown()
        switch reader {
        case .eventLoop(let connection):
            await connection.close()
        case .natsC(let subscription):
            _ = try? await NIOThreadPool.singleton.runIfActive { subscription.unsubscribe() }
        }
    }
}
