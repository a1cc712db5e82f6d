import CNATS
#if canImport(Glibc)
import Glibc
#endif

/// A durable pull consumer with explicit acks (see `JetStream.pullSubscribe`).
///
/// `fetch` is meant for one consuming thread; `unsubscribe` may come from another. The
/// consumer (server side) is kept: `unsubscribe` only stops this client's interest; use
/// `JetStream.deleteConsumer` to remove it.
public final class PullSubscription: Sendable {
    private let subscription: SubscriptionHandle
    private var handle: OpaquePointer { subscription.pointer }
    private var name: String { subscription.name }
    /// Keeps the JetStream context (and so the connection) alive while messages are acked.
    private let jetStream: JetStream
    /// Where the consumer stood when this subscription started.
    public let start: Start

    /// A consumer's position: every message at or below `ackFloor` (a stream sequence) is
    /// acked, and the delivery numbered `lastConsumerSequence` is the last one acked (0 for a
    /// consumer that is new or was recreated). Deliveries numbered after it that were made
    /// before the bind went to someone else: a reader that sees its first delivery numbered
    /// further on knows some went missing.
    public struct Start: Sendable, Equatable {
        public var ackFloor: UInt64
        public var lastConsumerSequence: UInt64
    }

    init(handle: OpaquePointer, jetStream: JetStream, description: String, start: Start) {
        subscription = SubscriptionHandle(handle, name: description)
        self.jetStream = jetStream
        self.start = start
    }

    /// Up to `batch` messages, waiting at most `timeout` for the first; an empty array when
    /// none arrived in time (a timeout is not an error here).
    public func fetch(batch: Int, timeout: Duration) throws -> [JetStreamMessage] {
        guard batch > 0 else { throw NATSError.invalidArgument("fetch batch must be positive") }
        var list = natsMsgList()
        var code = jsErrCode(0)
        let status = natsSubscription_Fetch(&list, handle, Int32(clamping: batch), timeout.natsTimeoutMilliseconds, &code)
        defer { natsMsgList_Destroy(&list) }
        if status == NATS_TIMEOUT && list.Count == 0 { return [] }
        guard status == NATS_OK || status == NATS_TIMEOUT else {
            throw jetStreamError(status, code: code, "fetch \(batch) from \(name)")
        }
        guard let msgs = list.Msgs else { return [] }
        var messages: [JetStreamMessage] = []
        messages.reserveCapacity(Int(list.Count))
        for index in 0..<Int(list.Count) {
            guard let msg = msgs[index] else { continue }
            // The message now belongs to the JetStreamMessage; the list must not destroy it.
            msgs[index] = nil
            messages.append(try JetStreamMessage(adopting: msg, owner: self))
        }
        return messages
    }

    /// Stops this subscription; unacked messages are redelivered after their ack wait.
    /// Idempotent.
    public func unsubscribe() { subscription.unsubscribe() }

}

/// An ordered consumer (see `JetStream.orderedConsumer`), read with `next(timeout:)` on one
/// thread. Its messages need no ack.
public final class OrderedConsumer: Sendable {
    /// Unread bytes the client buffers before dropping (then `next` throws `messagesDropped`).
    static let pendingByteLimit: Int32 = 256 << 20
    private let subscription: SubscriptionHandle
    private var name: String { subscription.name }
    /// Keeps the JetStream context (and so the connection) alive while messages are read.
    private let jetStream: JetStream

    init(handle: OpaquePointer, jetStream: JetStream, description: String) {
        subscription = SubscriptionHandle(handle, name: description)
        self.jetStream = jetStream
    }

    /// The next message in stream order, or nil when none arrives within `timeout`.
    public func next(timeout: Duration) throws -> JetStreamMessage? {
        guard let msg = try subscription.nextMessage(timeoutMilliseconds: timeout.natsTimeoutMilliseconds) else { return nil }
        return try JetStreamMessage(adopting: msg, owner: self)
    }

    /// One message lent to a `read` callback: its bytes are valid only inside the callback.
    public struct BorrowedMessage {
        public let subject: UnsafeBufferPointer<UInt8>
        public let payload: UnsafeBufferPointer<UInt8>
        public let streamSequence: UInt64
        /// Messages still pending for the consumer after this one.
        public let numPending: UInt64
    }

    /// Hands up to `limit` messages to `body` in stream order, without copying them: waits at
    /// most `timeout` for the first, then takes only what is already queued. Returns how many
    /// were handed over (0: none arrived in time). For bulk replays, where `next` would pay a
    /// thread wake-up and several allocations per message.
    ///
    /// The messages are destroyed together after the batch: nats.c frees them on its
    /// garbage-collector thread, which it wakes whenever its list was empty, so destroying each
    /// one as soon as it was read woke that thread once per message (about a fifth of the
    /// fan-out's CPU in a profile of a 20 M replay).
    public func read(limit: Int, timeout: Duration, _ body: (BorrowedMessage) throws -> Void) throws -> Int {
        guard limit > 0 else { return 0 }
        return try withUnsafeTemporaryAllocation(of: OpaquePointer.self, capacity: limit) { taken in
            var count = 0
            defer { for index in 0..<count { natsMsg_Destroy(taken[index]) } }
            while count < limit {
                guard let msg = try subscription.nextMessage(timeoutMilliseconds: count == 0 ? timeout.natsTimeoutMilliseconds : 0) else { break }
                taken.initializeElement(at: count, to: msg)
                count += 1
                try body(try Self.borrow(msg, name: name))
            }
            return count
        }
    }

    private static func borrow(_ msg: OpaquePointer, name: String) throws -> BorrowedMessage {
        let reply = natsMsg_GetReply(msg)
        guard let reply, let meta = JetStreamAckSubject(UnsafeBufferPointer(start: UnsafeRawPointer(reply).assumingMemoryBound(to: UInt8.self), count: strlen(reply))) else {
            throw NATSError.malformedResponse(operation: "reading JetStream metadata of \(name)", reason: "reply subject \(CMessage.reply(msg) ?? "none") is not a JetStream ack subject")
        }
        let subject = natsMsg_GetSubject(msg)
        let subjectBytes = subject.map { UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: strlen($0)) }
        let payload = UnsafeBufferPointer(start: natsMsg_GetData(msg).map { UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self) },
                                          count: Int(natsMsg_GetDataLength(msg)))
        return BorrowedMessage(subject: subjectBytes ?? UnsafeBufferPointer(start: nil, count: 0), payload: payload,
                               streamSequence: meta.streamSequence, numPending: meta.numPending)
    }

    /// Stops the consumer (the server removes the ephemeral consumer). Idempotent.
    public func close() { subscription.unsubscribe() }

}

/// A message delivered by a JetStream consumer. It owns the C message until deinit, because
/// acks are sent on it; it also keeps its subscription alive for the same reason.
///
/// Ack, nak, term and inProgress each send one protocol message; send exactly one final
/// answer (ack, nak or term) per message, from one thread at a time.
public final class JetStreamMessage: Sendable {
    /// Where the message sits in its stream and consumer (from the ack reply subject).
    public struct Metadata: Sendable, Equatable {
        public var streamSequence: UInt64
        public var consumerSequence: UInt64
        /// 1 on the first delivery, 2 on the first redelivery, …
        public var numDelivered: UInt64
        /// Messages still pending for the consumer after this one.
        public var numPending: UInt64
        /// When the stream stored it, in nanoseconds since the Unix epoch.
        public var timestampNs: Int64
        public var stream: String
        public var consumer: String
    }

    private let cHandle: CHandle
    private var handle: OpaquePointer { cHandle.pointer }
    private let owner: any AnyObject & Sendable
    public let subject: String
    public let payload: [UInt8]
    public let headers: NATSHeaders
    public let metadata: Metadata

    init(adopting msg: OpaquePointer, owner: any AnyObject & Sendable) throws {
        var meta: UnsafeMutablePointer<jsMsgMetaData>?
        let status = natsMsg_GetMetaData(&meta, msg)
        guard status == NATS_OK, let meta else {
            let reply = CMessage.reply(msg) ?? "none"
            natsMsg_Destroy(msg)
            throw NATSError.malformedResponse(operation: "reading JetStream metadata", reason: "reply subject \(reply): \(statusText(status))")
        }
        defer { jsMsgMetaData_Destroy(meta) }
        metadata = Metadata(
            streamSequence: meta.pointee.Sequence.Stream,
            consumerSequence: meta.pointee.Sequence.Consumer,
            numDelivered: meta.pointee.NumDelivered,
            numPending: meta.pointee.NumPending,
            timestampNs: meta.pointee.Timestamp,
            stream: meta.pointee.Stream.map { String(cString: $0) } ?? "",
            consumer: meta.pointee.Consumer.map { String(cString: $0) } ?? ""
        )
        cHandle = CHandle(msg)
        self.owner = owner
        subject = CMessage.subject(msg)
        payload = CMessage.payload(msg)
        headers = CMessage.headers(msg)
    }

    deinit {
        natsMsg_Destroy(handle)
    }

    private var name: String { "\(subject) (stream sequence \(metadata.streamSequence))" }

    /// Acknowledges without waiting for the server (the fast path).
    public func ack() throws {
        try check(natsMsg_Ack(handle, nil), "ack \(name)")
    }

    /// Acknowledges and waits for the server to confirm it.
    public func ackSync(timeout: Duration) throws {
        var options = jsOptions()
        jsOptions_Init(&options)
        options.Wait = timeout.natsTimeoutMilliseconds
        var code = jsErrCode(0)
        let status = natsMsg_AckSync(handle, &options, &code)
        if status != NATS_OK { throw jetStreamError(status, code: code, "ack \(name) within \(timeout)") }
    }

    /// Negative ack: the server redelivers, after `delay` when given.
    public func nak(delay: Duration? = nil) throws {
        if let delay {
            try check(natsMsg_NakWithDelay(handle, delay.natsMilliseconds, nil), "nak \(name)")
        } else {
            try check(natsMsg_Nak(handle, nil), "nak \(name)")
        }
    }

    /// Terminates the message: the server never redelivers it.
    public func term() throws {
        try check(natsMsg_Term(handle, nil), "term \(name)")
    }

    /// Tells the server work is still in progress, resetting the ack wait.
    public func inProgress() throws {
        try check(natsMsg_InProgress(handle, nil), "in-progress \(name)")
    }
}
