import Logging
import NIOCore
import SwitchboardContracts
import SwitchboardProto

/// Turns one message of `notify.inbox.<instance>` (the deliveries of one or more events)
/// into client frames written to the sockets of their slots. Runs on the NATS delivery thread
/// (the bridge from nats.c to the event loops is `SessionRegistry.deliver`, which hands each
/// loop one task per inbox message).
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
        /// Frame handed to the sockets' loops; `missingSlots` had no socket.
        case routed(missingSlots: Int)
        case undecodable(String)
    }

    /// `kind` is the `Switchboard-Kind` header (absent means a delivery).
    @discardableResult
    func dispatch(kind: String?, payload: [UInt8]) -> Outcome {
        if kind == InboxKind.typing {
            metrics.typingIn.increment()
            guard let typing = try? Typing(decoding: payload) else {
                metrics.undecodable.increment()
                return .undecodable("Typing")
            }
            let frame = TextFrame(payload: ServerFrame.typing(channel: typing.channelID, user: typing.userID), allocator: allocator)
            return .routed(missingSlots: registry.deliver(frame, channel: typing.channelID, seq: 0, toSlots: typing.slots))
        }
        guard let message = try? Deliveries(decoding: payload) else {
            metrics.undecodable.increment()
            return .undecodable("Deliveries")
        }
        let deliveries = message.deliveries
        let epoch = epoch.observe(message.epoch, logger: logger)
        metrics.deliveryMessagesIn.increment()
        metrics.deliveriesIn.increment(by: deliveries.count)
        var frames: [SessionRegistry.SlotFrame] = []
        frames.reserveCapacity(deliveries.count)
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
        let missing = registry.deliver(frames)
        return undecodable == 0 ? .routed(missingSlots: missing) : .undecodable("ChatEvent")
    }
}
