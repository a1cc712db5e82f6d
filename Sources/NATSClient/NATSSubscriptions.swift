import CNATS

extension NATSConnection {

    /// Subscribes with a handler that nats.c calls on its delivery thread for this
    /// subscription, one message at a time, in order.
    ///
    /// The bridge: the handler lives in one `SubscriptionHandlerBox`, retained once
    /// (`Unmanaged.passRetained`) and passed to nats.c as the callback's closure pointer. The
    /// box is released by nats.c's on-complete callback, which runs after the subscription is
    /// closed (by `unsubscribe()`, the subscription's deinit, or the connection closing) *and*
    /// its last handler call has returned, so the handler never runs on a freed box.
    public func subscribe(_ subject: String, queue: String? = nil, handler: @escaping @Sendable (NATSMessage) -> Void) throws -> NATSSubscription {
        let box = Unmanaged.passRetained(SubscriptionHandlerBox(handler)).toOpaque()
        var sub: OpaquePointer?
        let status = withOptionalCString(queue) { cQueue in
            if let cQueue {
                return natsConnection_QueueSubscribe(&sub, handle, subject, cQueue, deliverToHandler, box)
            }
            return natsConnection_Subscribe(&sub, handle, subject, deliverToHandler, box)
        }
        guard status == NATS_OK, let sub else {
            Unmanaged<SubscriptionHandlerBox>.fromOpaque(box).release()
            throw coreError(status, "subscribe to \(subject)", subject: subject)
        }
        if natsSubscription_SetOnCompleteCB(sub, releaseHandlerBox, box) != NATS_OK {
            // Already closed (the connection went away): the handler may still be running, so
            // the box is left allocated rather than risk freeing it under the handler.
            natsSubscription_Destroy(sub)
            throw NATSError.connectionClosed(operation: "subscribe to \(subject)")
        }
        _ = natsSubscription_SetPendingLimits(sub, Int32(clamping: options.maxPendingMessages), Int32(clamping: options.maxPendingBytes))
        return NATSSubscription(handle: sub, subject: subject)
    }

    /// Subscribes for polling with `nextMessage(timeout:)` on the caller's thread.
    public func subscribeSync(_ subject: String) throws -> NATSSyncSubscription {
        var sub: OpaquePointer?
        let status = natsConnection_SubscribeSync(&sub, handle, subject)
        guard status == NATS_OK, let sub else { throw coreError(status, "subscribe to \(subject)", subject: subject) }
        _ = natsSubscription_SetPendingLimits(sub, Int32(clamping: options.maxPendingMessages), Int32(clamping: options.maxPendingBytes))
        return NATSSyncSubscription(handle: sub, subject: subject)
    }
}

/// Holds a subscription's handler for the C callback (see `NATSConnection.subscribe`).
final class SubscriptionHandlerBox: Sendable {
    let handler: @Sendable (NATSMessage) -> Void
    /// The C messages already copied, destroyed in groups (what is left goes with the box);
    /// used on the subscription's delivery thread only.
    let releaser = MessageReleaser()
    init(_ handler: @escaping @Sendable (NATSMessage) -> Void) { self.handler = handler }
}

/// nats.c's message callback: copies the message into Swift, hands the C one to the box's
/// releaser, calls the handler.
private let deliverToHandler: natsMsgHandler = { _, _, msg, closure in
    guard let msg else { return }
    guard let closure else { return natsMsg_Destroy(msg) }
    let box = Unmanaged<SubscriptionHandlerBox>.fromOpaque(closure).takeUnretainedValue()
    let message = NATSMessage(copying: msg)
    box.releaser.release(msg)
    box.handler(message)
}

/// nats.c's on-complete callback: the subscription is closed and its handler returned.
private let releaseHandlerBox: natsOnCompleteCB = { closure in
    guard let closure else { return }
    Unmanaged<SubscriptionHandlerBox>.fromOpaque(closure).release()
}

/// Owns one nats.c subscription (core or JetStream): unsubscribes and frees it at deinit.
final class SubscriptionHandle: Sendable {
    private let handle: CHandle
    var pointer: OpaquePointer { handle.pointer }
    /// What the subscription reads (a subject or a consumer), for error messages.
    let name: String

    init(_ pointer: OpaquePointer, name: String) {
        handle = CHandle(pointer)
        self.name = name
    }

    /// The next message, owned by the caller from here on, or nil when none arrives within
    /// `timeoutMilliseconds` (0: only a message already queued).
    func nextMessage(timeoutMilliseconds: Int64) throws -> OpaquePointer? {
        var msg: OpaquePointer?
        let status = natsSubscription_NextMsg(&msg, pointer, timeoutMilliseconds)
        if status == NATS_TIMEOUT { return nil }
        guard status == NATS_OK, let msg else { throw coreError(status, "next message of \(name)") }
        return msg
    }

    /// Idempotent, and harmless after the connection closed.
    func unsubscribe() {
        if natsSubscription_IsValid(pointer) { _ = natsSubscription_Unsubscribe(pointer) }
    }

    deinit {
        unsubscribe()
        natsSubscription_Destroy(pointer)
    }
}

/// An asynchronous subscription (see `NATSConnection.subscribe`). Unsubscribes at deinit.
public final class NATSSubscription: Sendable {
    private let subscription: SubscriptionHandle
    private var handle: OpaquePointer { subscription.pointer }
    public var subject: String { subscription.name }

    init(handle: OpaquePointer, subject: String) { subscription = SubscriptionHandle(handle, name: subject) }

    /// Stops delivery; the handler may still be running for a message already dispatched.
    /// Idempotent, and harmless after the connection closed.
    public func unsubscribe() { subscription.unsubscribe() }

    /// Messages dropped because the handler fell behind the pending limits.
    public var droppedMessages: Int64 {
        var dropped: Int64 = 0
        _ = natsSubscription_GetDropped(handle, &dropped)
        return dropped
    }

}

/// A synchronous subscription, polled with `nextMessage(timeout:)`. Unsubscribes at deinit.
public final class NATSSyncSubscription: Sendable {
    private let subscription: SubscriptionHandle
    public var subject: String { subscription.name }

    init(handle: OpaquePointer, subject: String) { subscription = SubscriptionHandle(handle, name: subject) }

    /// The next message, or nil when none arrives within `timeout`.
    public func nextMessage(timeout: Duration) throws -> NATSMessage? {
        try subscription.nextMessage(timeoutMilliseconds: timeout.natsTimeoutMilliseconds).map { NATSMessage(consuming: $0) }
    }

    /// Idempotent, and harmless after the connection closed.
    public func unsubscribe() { subscription.unsubscribe() }

}
