import Logging
import NATSClient
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SwitchboardContracts
import SwitchboardProto
#if canImport(Glibc)
import Glibc
#endif

/// What a session needs to resume a channel (a protocol so tests can hold a replay open).
protocol EventReplaying: Sendable {
    /// `epoch` is the one the client's `after` belongs to, when it named one.
    func replay(channel: String, user: String, after: UInt64, epoch: String?, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayOutcome>
}

/// What a replay produced.
enum ReplayOutcome: Sendable {
    /// Event frames in stream order with their seqs; `lastSeq` is the last seq replayed
    /// (or the requested one when nothing was newer).
    /// `reason` says why a replay is not complete when the client must know more than that
    /// (`membership`: events from before the user's current join were left out).
    case replayed(frames: [(seq: UInt64, frame: [UInt8])], lastSeq: UInt64, complete: Bool, reason: String? = nil)
    /// The client's seqs belong to another epoch than the stream's: nothing was replayed.
    case otherEpoch
    case refused(code: String, message: String)
}

/// Replays a channel's events from `CHAT_EVENTS` for a client that resumes after a
/// reconnect (see ClientFrames.swift). JetStream calls block, so they run on the process's
/// one blocking executor (`NIOThreadPool.singleton`), never on an event loop; at most
/// `maxConcurrent` replays are in flight and each is capped at `maxEvents`.
///
/// The notifier does not know memberships, so before replaying it asks `ChannelMembership`.
final class EventReplayer: EventReplaying {
    static let eventsStream = StreamNames.events

    private let jetStream: JetStream
    private let partitionCount: Int
    private let maxEvents: Int
    private let maxConcurrent: Int
    private let idleTimeout: Duration
    /// The epoch stamped on replayed frames (the stream being read is the current one).
    private let epoch: CurrentEpoch
    private let logger: Logger
    private let inFlight = NIOLockedValueBox(0)

    /// - Parameters:
    ///   - maxEvents: events one replay sends at most (bounds the memory and time one
    ///     reconnecting client can take); past it the replay reports `complete: false`.
    ///   - maxConcurrent: replays running or queued at once; more are refused as `busy`.
    init(jetStream: JetStream, partitionCount: Int, epoch: CurrentEpoch = CurrentEpoch(), logger: Logger = Logger(label: "switchboard.notifier"), maxEvents: Int = 1000, maxConcurrent: Int = 64, idleTimeout: Duration = .milliseconds(500)) {
        self.epoch = epoch
        self.logger = logger
        self.jetStream = jetStream
        self.partitionCount = partitionCount
        self.maxEvents = maxEvents
        self.maxConcurrent = maxConcurrent
        self.idleTimeout = idleTimeout
    }

    /// Runs the replay on the pool; the future completes on `eventLoop`.
    func replay(channel: String, user: String, after: UInt64, epoch: String?, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayOutcome> {
        let admitted = inFlight.withLockedValue { count -> Bool in
            guard count < maxConcurrent else { return false }
            count += 1
            return true
        }
        guard admitted else {
            return eventLoop.makeSucceededFuture(.refused(code: FrameErrorCode.busy, message: "too many resumes in progress; retry shortly"))
        }
        return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { [self] in
            defer { inFlight.withLockedValue { $0 -= 1 } }
            return replayBlocking(channel: channel, user: user, after: after, epoch: epoch)
        }.flatMapErrorThrowing { _ in
            .refused(code: FrameErrorCode.unavailable, message: "resume is unavailable right now")
        }
    }

    /// The replay itself (blocking). JetStream can be briefly unavailable — a node of the
    /// cluster died and leaders are being elected, which is exactly when notifiers send their
    /// clients to resume — so a failed or stalled attempt is retried for `retryFor` before the
    /// client is told `unavailable`; giving up early would drop the events it came back for.
    func replayBlocking(channel: String, user: String, after: UInt64, epoch: String? = nil, retryFor: Duration = .seconds(10)) -> ReplayOutcome {
        let deadline = ContinuousClock.now + retryFor
        while true {
            do {
                return try attempt(channel: channel, user: user, after: after, epoch: epoch)
            } catch {
                guard ContinuousClock.now < deadline else {
                    return .refused(code: FrameErrorCode.unavailable, message: "resume failed: \(error)")
                }
                usleep(250_000)
            }
        }
    }

    private struct Stalled: Error, CustomStringConvertible {
        var description: String { "the replay stopped short of the channel's last event" }
    }

    private func attempt(channel: String, user: String, after: UInt64, epoch clientEpoch: String?) throws -> ReplayOutcome {
        guard let joinedNs = try ChannelMembership.memberSince(channel: channel, user: user, partitionCount: partitionCount, in: jetStream) else {
            return .refused(code: FrameErrorCode.notMember, message: "not a member of channel '\(channel)'")
        }
        let state = try jetStream.streamState(Self.eventsStream)
        // The stream read now is the truth about the epoch (the notifier may have started
        // before the stream existed, or the stream may have been created anew since).
        let epoch = self.epoch.observe(StreamEpoch.of(createdNs: state.createdNs), logger: logger)
        if let clientEpoch, clientEpoch != epoch { return .otherEpoch }
        let subject = Subjects.event(channel: channel, partitionCount: partitionCount)
        // The channel's newest event now: the replay must reach it, or it stalled.
        guard let newest = try jetStream.lastMessage(stream: Self.eventsStream, subject: subject)?.sequence, newest > after else {
            return .replayed(frames: [], lastSeq: after, complete: true)
        }
        // Events before the stream's first sequence have aged out: the client has a gap.
        var complete = after + 1 >= state.firstSequence || after == 0
        let consumer = try jetStream.orderedConsumer(stream: Self.eventsStream, filterSubject: subject, startSequence: after + 1)
        defer { consumer.close() }
        var frames: [(seq: UInt64, frame: [UInt8])] = []
        var lastSeq = after
        var reachedNewest = false
        /// The chain as the fan-out links it (poison left out); the first replayed event's
        /// `prev` is the seq the client resumed after.
        var prev = after
        /// Events stored before the user's current join are not the user's to see.
        var beforeJoin = false
        while let message = try consumer.next(timeout: idleTimeout) {
            let seq = message.metadata.streamSequence
            lastSeq = seq
            if case .event(let event) = StoredEvent.examine(subject: message.subject, payload: message.payload, partitionCount: partitionCount) {
                if message.metadata.timestampNs < joinedNs {
                    beforeJoin = true
                } else if event.skipSenderEcho && event.senderID == user {
                    frames.append((seq, ServerFrame.position(channel: channel, seq: seq, prev: prev, epoch: epoch)))
                } else {
                    frames.append((seq, ServerFrame.event(channel: channel, seq: seq, prev: prev, epoch: epoch, event: event)))
                }
                prev = seq
            }
            if seq >= newest || message.metadata.numPending == 0 {
                reachedNewest = true
                break
            }
            if frames.count >= maxEvents {
                complete = false
                break
            }
        }
        guard reachedNewest || frames.count >= maxEvents else { throw Stalled() }
        return .replayed(frames: frames, lastSeq: lastSeq, complete: complete && !beforeJoin, reason: beforeJoin ? ResumeReason.membership : nil)
    }
}
