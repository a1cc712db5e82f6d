import Foundation
import Logging
import NATSClient
import SwitchboardProto
import Synchronization

/// Keeps the owned partitions' channel tables equal to `CHAT_MEMBERSHIP`: replays the stream
/// from each partition's snapshot sequence (or the start) until caught up, then follows it
/// live, in order. One unfiltered consumer serves every owned partition: creating a consumer
/// filtered on one partition makes nats-server 2.9 count the filter's pending messages over
/// every subject of the stream, which took over 60 s per partition at 20 M memberships; other
/// replicas' partitions are skipped here instead.
final class MembershipFeed: @unchecked Sendable {
    /// With nothing at all to replay, the first read waits this long before calling the
    /// feed caught up.
    static let emptyStreamWait: Duration = .milliseconds(300)
    /// The stream's whole subject space, so that the consumer is not a filtered one.
    static let allMemberships = "chat.membership.*.*.*"

    /// Owned partition → the first stream sequence it still needs.
    let startSequences: [Int: UInt64]
    private let consumer: OrderedConsumer
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let finished = Mutex<Bool>(false)
    private let caughtUp = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private let isCaughtUp = Atomic<Bool>(false)

    init(startSequences: [Int: UInt64], jetStream: JetStream, state: RoutingState, metrics: FanoutMetrics, logger: Logger) throws {
        self.startSequences = startSequences.mapValues { max($0, 1) }
        self.state = state
        self.metrics = metrics
        self.logger = logger
        consumer = try jetStream.orderedConsumer(
            stream: "CHAT_MEMBERSHIP", filterSubject: Self.allMemberships,
            startSequence: self.startSequences.values.min() ?? 1, createTimeout: .seconds(60)
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
            thread.name = "membership"
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
                logger.warning("membership read failed", metadata: ["error": "\(error)"])
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

    /// The partition of `chat.membership.<p>.<channel>.<user>`, or nil.
    static func partition(of subject: String) -> Int? {
        let tokens = subject.utf8.split(separator: UInt8(ascii: "."), maxSplits: 3, omittingEmptySubsequences: false)
        guard tokens.count == 4 else { return nil }
        return Int(Substring(tokens[2]))
    }

    private func apply(_ message: JetStreamMessage) {
        let sequence = message.metadata.streamSequence
        // Another replica's partition, or one this replica's snapshot already covers.
        guard let partition = Self.partition(of: message.subject), let start = startSequences[partition], sequence >= start else { return }
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
