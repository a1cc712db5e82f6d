import Foundation
import Logging
import NATSClient
import RoutingCore
import SwitchboardContracts
import ServiceLifecycle
import SwitchboardProto
import Synchronization

/// Fans typing indicators out like events, but from core NATS and never stored:
/// `chat.typing.<p>.<channel>` → a `Typing` with slots on each target inbox. A user's
/// indicator in one channel is forwarded at most once per window; only members may type.
/// Subscribed during warm-up; `run()` holds the subscriptions until graceful shutdown.
final class TypingRelay: Service {
    /// Bounds the coalescing memory: past this many remembered (user, channel) pairs, the
    /// expired ones are pruned.
    static let maxRemembered = 200_000

    private let connection: NATSConnection
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let logger: Logger
    private let partitions: PartitionSetSnapshot
    private let windowMs: Int64
    private let lastForwarded = Mutex<[String: Int64]>([:])
    private let subscriptions = Subscriptions()

    struct PartitionSetSnapshot: Sendable {
        var owned: [Int]
        var count: Int
    }

    init(connection: NATSConnection, state: RoutingState, metrics: FanoutMetrics, partitions: [Int], partitionCount: Int, window: Duration, logger: Logger) {
        self.connection = connection
        self.state = state
        self.metrics = metrics
        self.partitions = PartitionSetSnapshot(owned: partitions, count: partitionCount)
        self.windowMs = window.milliseconds
        self.logger = logger
    }

    func subscribe() throws {
        for partition in partitions.owned {
            // Each subscription delivers on one nats.c thread: its plan buffer is never contended.
            let lane = Mutex(PlanBuffer())
            let subscription = try connection.subscribe(Subjects.typing(partition: partition)) { [weak self] message in
                lane.withLock { plan in self?.relay(message, plan: &plan) }
            }
            subscriptions.add(subscription)
        }
    }

    func run() async {
        await subscriptions.holdUntilGracefulShutdown()
    }

    private func relay(_ message: NATSMessage, plan: inout PlanBuffer) {
        metrics.typingIn.increment()
        guard let typing = try? Typing(decoding: message.payload),
              Identifier.isValid(typing.channelID), Identifier.isValid(typing.userID),
              message.subject == Subjects.typing(channel: typing.channelID, partitionCount: partitions.count)
        else {
            metrics.typingRejected.increment()
            return
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let key = "\(typing.channelID)\u{1}\(typing.userID)"
        let fresh = lastForwarded.withLock { remembered -> Bool in
            if let last = remembered[key], now - last < windowMs { return false }
            if remembered.count >= Self.maxRemembered { remembered = remembered.filter { now - $0.value < windowMs } }
            remembered[key] = now
            return true
        }
        guard fresh else {
            metrics.typingCoalesced.increment()
            return
        }
        let partition = Partitioner.partition(of: typing.channelID, count: partitions.count)
        guard state.isMember(partition: partition, channel: typing.channelID, user: typing.userID) else {
            metrics.typingRejected.increment()
            return
        }
        state.plan(partition: partition, channel: typing.channelID, skipUser: typing.userID, into: &plan)
        var headers = NATSHeaders()
        headers[InboxKind.header] = InboxKind.typing
        // The typer's own sockets are position-only targets: nothing to type to them.
        for index in 0..<plan.targets.count where !plan.slots[index].isEmpty {
            let out = Typing(channelID: typing.channelID, userID: typing.userID, slots: plan.slots[index])
            do {
                try connection.publish(plan.targets[index].inboxSubject, payload: out.encoded(), headers: headers)
                metrics.typingOut.increment()
            } catch {
                logger.warning("typing publish failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
