import NIOCore
import NIOWebSocket
import SwitchboardContracts

/// A socket's resumes: replays in two passes, live frames held meanwhile, then `resumed`.
/// Runs on the session's event loop, like the rest of it.
extension WebSocketSession {
    /// Starts replaying `channel` after `after` (numbered in `epoch`, when the client named
    /// it); returns an error frame when it cannot.
    func startResume(channel: String, after: UInt64, epoch: String?) -> [UInt8]? {
        guard let replayer = environment.replayer else {
            return ServerFrame.error(code: FrameErrorCode.unavailable, message: "resume is not available on this instance", channel: channel)
        }
        guard resuming[channel] == nil else {
            return ServerFrame.error(code: FrameErrorCode.alreadyResuming, message: "channel '\(channel)' is already being resumed", channel: channel)
        }
        guard resuming.count < SessionEnvironment.maxConcurrentResumes else {
            return ServerFrame.error(code: FrameErrorCode.tooManyResumes, message: "at most \(SessionEnvironment.maxConcurrentResumes) channels at once", channel: channel)
        }
        resuming[channel] = []
        replay(channel: channel, after: after, epoch: epoch, with: replayer, replayedBefore: nil)
        return nil
    }

    /// A resume replays in two passes. Events published after the first pass read the stream
    /// but before the fan-out has learnt this socket's presence are delivered live to nobody
    /// (or to the instance the client left). So the first pass is written at once, and a
    /// catch-up pass replays again from where it ended — as soon as a live frame of the channel
    /// arrives (the fan-out routes here now, and the stream holds everything before that frame)
    /// or after `resumeSettle` — and only then does the socket switch to live frames.
    private func replay(channel: String, after: UInt64, epoch: String? = nil, with replayer: any EventReplaying, replayedBefore: Int?) {
        replayer.replay(channel: channel, user: userID, after: after, epoch: epoch, on: eventLoop).whenSuccess { [self] outcome in
            guard replayedBefore == nil, case .replayed(let frames, let last, complete: true, _) = outcome else {
                finishResume(channel: channel, outcome: outcome, replayedBefore: replayedBefore ?? 0)
                return
            }
            guard state == .open, let context else { return }
            writingPastBudget = true
            for (_, frame) in frames {
                context.write(wrapOutboundOut(.text(context.channel.allocator.buffer(bytes: frame))), promise: nil)
            }
            context.flush()
            writingPastBudget = false
            awaitLive(channel: channel, after: last, with: replayer, replayed: frames.count, until: eventLoop.now + SessionEnvironment.resumeSettle)
        }
    }

    private func awaitLive(channel: String, after: UInt64, with replayer: any EventReplaying, replayed: Int, until deadline: NIODeadline) {
        guard state == .open, let held = resuming[channel] else { return }
        if !held.isEmpty || eventLoop.now >= deadline {
            replay(channel: channel, after: after, with: replayer, replayedBefore: replayed)
        } else {
            eventLoop.scheduleTask(in: SessionEnvironment.resumeSettlePoll) { [self] in
                awaitLive(channel: channel, after: after, with: replayer, replayed: replayed, until: deadline)
            }
        }
    }

    /// Writes the (last pass of the) replay, then `resumed`, then the live frames held
    /// meanwhile that the replay did not already carry.
    private func finishResume(channel: String, outcome: ReplayOutcome, replayedBefore: Int) {
        let held = resuming.removeValue(forKey: channel) ?? []
        heldFrames -= held.count
        guard state == .open, let context else { return }
        let allocator = context.channel.allocator
        var lastSeq: UInt64 = 0
        switch outcome {
        case .refused(let code, let message):
            context.write(wrapOutboundOut(.text(allocator.buffer(bytes: ServerFrame.error(code: code, message: message, channel: channel)))), promise: nil)
        case .otherEpoch:
            // Its seqs mean nothing in the new numbering: nothing replayed, live events follow.
            environment.metrics.resumesOfAnotherEpoch.increment()
            let resumed = ServerFrame.resumed(channel: channel, seq: 0, replayed: 0, complete: false, epoch: environment.epoch.current, reason: ResumeReason.epochChanged)
            context.write(wrapOutboundOut(.text(allocator.buffer(bytes: resumed))), promise: nil)
        case .replayed(let frames, let last, let complete, let reason):
            writingPastBudget = true
            for (_, frame) in frames {
                context.write(wrapOutboundOut(.text(allocator.buffer(bytes: frame))), promise: nil)
            }
            writingPastBudget = false
            let resumed = ServerFrame.resumed(channel: channel, seq: last, replayed: replayedBefore + frames.count, complete: complete, epoch: environment.epoch.current, reason: reason)
            context.write(wrapOutboundOut(.text(allocator.buffer(bytes: resumed))), promise: nil)
            lastSeq = last
            replayedThrough[channel] = last
            replayedEpoch = environment.epoch.current
        }
        for (seq, frame) in held where seq > lastSeq {
            write(frame, context: context)
        }
        context.flush()
    }
}
