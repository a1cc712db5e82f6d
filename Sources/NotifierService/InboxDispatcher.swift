import NIOCore
import SwitchboardContracts
import SwitchboardProto

/// Turns one message of `notify.inbox.<instance>` into one client frame written to the
/// sockets of its slots. Runs on the NATS delivery thread (the bridge from nats.c to the
/// event loops is `SessionRegistry.deliver`, which hands each loop one task).
///
/// Hot path: the `Delivery` is decoded once, the event rendered once into one `ByteBuffer`,
/// and that buffer is shared (not copied) by every socket's frame.
struct InboxDispatcher: Sendable {
    let registry: SessionRegistry
    let metrics: NotifierMetrics
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
            let frame = allocator.buffer(bytes: ServerFrame.typing(channel: typing.channelID, user: typing.userID))
            return .routed(missingSlots: registry.deliver(frame, channel: typing.channelID, seq: 0, toSlots: typing.slots))
        }
        metrics.deliveriesIn.increment()
        guard let delivery = try? Delivery(decoding: payload), let event = try? ChatEvent(decoding: delivery.event) else {
            metrics.undecodable.increment()
            return .undecodable("Delivery")
        }
        let frame = allocator.buffer(bytes: ServerFrame.event(channel: delivery.channelID, seq: delivery.streamSeq, event: event))
        return .routed(missingSlots: registry.deliver(frame, channel: delivery.channelID, seq: delivery.streamSeq, toSlots: delivery.slots))
    }
}
