import Logging
import NIOCore
import SwitchboardContracts
import SwitchboardProto

/// Turns messages of `notify.inbox.<instance>` (the deliveries of one or more events, or a
/// typing indicator) into client frames written to the sockets of their slots. Runs on the
/// thread that read the messages: the event loop of `InboxConnection`, or nats.c's delivery
/// thread when the inbox is read through nats.c. The hand-off to the sockets' loops is
/// `SessionRegistry.deliver`: one task per loop for all the frames handed over together.
///
/// Hot path: each `Delivery` is decoded once, its event rendered once into one `ByteBuffer`,
/// and that buffer is shared (not copied) by every socket's frame.
struct InboxDispatcher: Sendable {
    let registry: SessionRegistry
    let metrics: NotifierMetrics
    let epoch: CurrentEpoch
    let logger: Logger
    let allocator = ByteBufferAllocator()

    enum Outcome: Equatable {
        /// Frames handed to the sockets' loops (`missingSlots` had no socket) or, from
        /// `collect`, ready to be.
        case routed(missingSlots: Int)
        case undecodable(String)
    }

    /// Delivers one message at once. `kind` is the `Switchboard-Kind` header (absent means
    /// a delivery).
    @discardableResult
    func dispatch(kind: String?, payload: [UInt8]) -> Outcome {
        var frames: [SessionRegistry.SlotFrame] = []
        let outcome = collect(kind: kind, payload: payload, into: &frames)
        let missing = deliver(frames)
        return outcome == .routed(missingSlots: 0) ? .routed(missingSlots: missing) : outcome
    }

    /// Writes `frames` (of one or several messages, in order) to their sockets; returns the
    /// slots that had no socket.
    @discardableResult
    func deliver(_ frames: [SessionRegistry.SlotFrame]) -> Int {
        frames.isEmpty ? 0 : registry.deliver(frames)
    }

    /// Appends the frames of one message to `frames`, for `deliver`.
    @discardableResult
    func collect(kind: String?, payload: [UInt8], into frames: inout [SessionRegistry.SlotFrame]) -> Outcome {
        if kind == InboxKind.typing {
            metrics.typingIn.increment()
            guard let typing = try? Typing(decoding: payload) else {
                metrics.undecodable.increment()
                return .undecodable("Typing")
            }
            let frame = TextFrame(payload: ServerFrame.typing(channel: typing.channelID, user: typing.userID), allocator: allocator)
            frames.append(SessionRegistry.SlotFrame(frame: frame, channel: typing.channelID, seq: 0, slots: typing.slots))
            return .routed(missingSlots: 0)
        }
        guard let message = try? Deliveries(decoding: payload) else {
            metrics.undecodable.increment()
            return .undecodable("Deliveries")
        }
        let deliveries = message.deliveries
        let epoch = epoch.observe(message.epoch, logger: logger)
        metrics.deliveryMessagesIn.increment()
        metrics.deliveriesIn.increment(by: deliveries.count)
        frames.reserveCapacity(frames.count + deliveries.count)
        var undecodable = 0
        for delivery in deliveries {
            if !delivery.slots.isEmpty {
                guard let event = try? ChatEvent(decoding: delivery.event) else {
                    // One bad event does not cost the others of the message.
                    metrics.undecodable.increment()
                    undecodable += 1
                    continue
                }
                let frame = TextFrame(payload: ServerFrame.event(channel: delivery.channelID, seq: delivery.streamSeq, prev: delivery.prevSeq, epoch: epoch, event: event), allocator: allocator)
                frames.append(SessionRegistry.SlotFrame(frame: frame, channel: delivery.channelID, seq: delivery.streamSeq, epoch: epoch, slots: delivery.slots))
            }
            if !delivery.positionSlots.isEmpty {
                let frame = TextFrame(payload: ServerFrame.position(channel: delivery.channelID, seq: delivery.streamSeq, prev: delivery.prevSeq, epoch: epoch), allocator: allocator)
                frames.append(SessionRegistry.SlotFrame(frame: frame, channel: delivery.channelID, seq: delivery.streamSeq, epoch: epoch, slots: delivery.positionSlots))
            }
        }
        return undecodable == 0 ? .routed(missingSlots: 0) : .undecodable("ChatEvent")
    }
}
