import Foundation
import Logging
import NATSClient
import SwitchboardProto
import Synchronization

/// Keeps one partition's channel table equal to `CHAT_MEMBERSHIP`: replays the stream from
/// the snapshot's sequence (or the start) until caught up, then follows it live, in order.
final class MembershipFeed: @unchecked Sendable {
    /// With nothing at all to replay, the first read waits this long before calling the
    /// partition caught up.
    static let emptyStreamWait: Duration = .milliseconds(300)

    let partition: Int
    private let consumer: OrderedConsumer
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let finished = Mutex<Bool>(false)
    private let caughtUp = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private let isCaughtUp = Atomic<Bool>(false)

    init(partition: Int, startSequence: UInt64, jetStream: JetStream, state: RoutingState, metrics: FanoutMetrics, logger: Logger) throws {
        self.partition = partition
        self.state = state
        self.metrics = metrics
        self.logger = logger
        // 20 M memberships: nats-server 2.9 took over 5 s to create this filtered consumer.
        consumer = try jetStream.orderedConsumer(
            stream: "CHAT_MEMBERSHIP", filterSubject: "chat.membership.\(partition).*.*", startSequence: startSequence, createTimeout: .seconds(60)
        )
    }

    /// Starts the feed thread; returns once the replay has caught up with the stream.
    func startAndCatchUp() async {
        await withCheckedContinuation { continuation in
            caughtUp.withLock { $0 = continuation }
            let thread = Thread { [self] in
                run()
                markCaughtUp()  // a stop during replay must not leave start-up waiting
                finished.withLock { $0 = true }
            }
            thread.name = "membership-p\(partition)"
            thread.start()
        }
    }

    /// Asks the loop to stop without waiting, so that many loops can wind down together.
    func requestStop() { stopping.store(true, ordering: .relaxed) }

    func stop(timeout: Duration) {
        requestStop()
        let deadline = ContinuousClock.now + timeout
        while !finished.withLock({ $0 }) && ContinuousClock.now < deadline { usleep(10_000) }
        consumer.close()
    }

    private func markCaughtUp() {
        guard !isCaughtUp.exchange(true, ordering: .relaxed) else { return }
        caughtUp.withLock { $0?.resume(); $0 = nil }
    }

    private func run() {
        var sawAny = false
        while !stopping.load(ordering: .relaxed) {
            let message: JetStreamMessage?
            do {
                message = try consumer.next(timeout: isCaughtUp.load(ordering: .relaxed) || sawAny ? .milliseconds(500) : Self.emptyStreamWait)
            } catch {
                logger.warning("membership read failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
                Thread.sleep(forTimeInterval: 0.2)
                continue
            }
            guard let message else {
                if !sawAny { markCaughtUp() }
                continue
            }
            sawAny = true
            apply(message)
            if message.metadata.numPending == 0 { markCaughtUp() }
        }
    }

    private func apply(_ message: JetStreamMessage) {
        let sequence = message.metadata.streamSequence
        do {
            let change = try MembershipChange(decoding: message.payload)
            try state.apply(change, partition: partition, subject: message.subject, sequence: sequence)
            metrics.membershipChanges.increment()
        } catch {
            // The stream is the membership set: a bad entry is skipped (and counted), not
            // retried forever. The sequence still advances so snapshots stay consistent.
            state.skipMembership(partition: partition, sequence: sequence)
            metrics.membershipRejected.increment()
            logger.error("membership change rejected", metadata: [
                "partition": "\(partition)", "subject": "\(message.subject)", "stream_seq": "\(sequence)", "reason": "\(error)",
            ])
        }
    }
}
