import CNATS
import Foundation
import Synchronization

/// Several durable pull consumers of one stream, read on one thread through one inbox, with
/// their pull requests kept open ahead of need (`PullCredit`).
///
/// nats.c's fetch sends a request and waits for its answer on every call, one consumer per
/// call; a thread serving many partitions would wait on each in turn, and every message would
/// wait for a request round trip. Here consumer `i`'s requests name `<inbox>.<i>_<generation>` as their reply
/// subject (the JetStream pull protocol on core NATS): its messages arrive with their stream
/// subject and an ack subject naming the consumer, its status messages on that reply subject. Acks
/// are published to the ack subject (`+ACK`), as nats.c's own ack does.
///
/// The inbox is read over the feed's own connection where `FeedLink` can make one (plain TCP
/// with user/password or a token), which also carries the requests, the acks and, through
/// `publishDelivery` and `flushDeliveries`, the consuming thread's deliveries; otherwise through
/// a nats.c subscription, everything else going on the `NATSConnection`.
///
/// `read` and `restart` are meant for one consuming thread; acks may come from any (over the
/// feed's own connection they wait for a read in progress).
public final class PullFeed: Sendable {
    /// A message one of the consumers delivered.
    public struct Message: Sendable {
        /// Index of the consumer in the feed's list.
        public let consumer: Int
        public let subject: String
        public let payload: [UInt8]
        /// Where acks for it go (`$JS.ACK.…`).
        public let ackSubject: String
        public let metadata: JetStreamMessage.Metadata
    }

    /// What one `read` returned: messages in arrival order (each consumer's in its order), and
    /// the consumers the server said are gone (deleted, or no responder for their requests),
    /// with the server's words. A gone consumer gets no requests until `restart`.
    public struct Batch: Sendable {
        public var messages: [Message] = []
        public var gone: [(consumer: Int, reason: String)] = []
    }

    private struct State {
        var credits: [PullCredit]
        /// No requests go out for these (gone, or paused by the reader).
        var gone: [Bool]
        var consumerIndex: [String: Int]
        var requestSubjects: [String]
        /// Counts each slot's consumers: requests reply to `<inbox>.<slot>_<generation>`, so a
        /// status about a former consumer's request is told apart from the current one's.
        var generations: [Int]
        var reconnects: UInt64 = 0
        var reconnectsChecked: ContinuousClock.Instant = .now
        /// Read while a flush waited for its PONG: the next `read` returns it first.
        var deferred = Batch()
    }

    private let connection: NATSConnection
    /// The inbox through nats.c (nil when `link` reads it).
    private let subscription: SubscriptionHandle?
    /// The feed's own connection (nil: nats.c's).
    let link: FeedLink?
    private let inbox: String
    private let stream: String
    private let requestBody: [UInt8]
    private let state: Mutex<State>
    /// Read messages, destroyed in groups; used by `read` only (one consuming thread).
    private let released = MessageReleaser()

    /// Subscribes to the feed's inbox; no request goes out before the first `read`.
    /// `batch` is what one request asks for; `expires` how long it stays open; `heartbeat`
    /// how often the server says an idle request is still there. `paused`: no consumer gets
    /// requests until it is `restart`ed. `ownConnection`: read over a connection of the feed's
    /// own where the settings allow it.
    public init(connection: NATSConnection, stream: String, consumers: [String], batch: Int, expires: Duration = .seconds(10), heartbeat: Duration = .seconds(1), paused: Bool = false,
                ownConnection: Bool = true) throws {
        try JetStream.validateStreamName(stream)
        for consumer in consumers { try JetStream.validateStreamName(consumer, what: "consumer name") }
        guard batch > 0 else { throw NATSError.invalidArgument("pull batch must be positive") }
        guard heartbeat > .zero, expires > heartbeat * 2 else {
            throw NATSError.invalidArgument("a pull request must stay open for more than two heartbeats")
        }
        self.connection = connection
        self.stream = stream
        inbox = connection.newInbox()
        requestBody = Array("{\"batch\":\(batch),\"expires\":\(expires.natsNanoseconds),\"idle_heartbeat\":\(heartbeat.natsNanoseconds)}".utf8)
        let credit = PullCredit(batch: batch, expires: expires, heartbeat: heartbeat)
        state = Mutex(State(
            credits: Array(repeating: credit, count: consumers.count), gone: Array(repeating: paused, count: consumers.count),
            consumerIndex: Dictionary(consumers.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first }),
            requestSubjects: consumers.map { "$JS.API.CONSUMER.MSG.NEXT.\(stream).\($0)" },
            generations: Array(repeating: 0, count: consumers.count)
        ))
        let subject = "\(inbox).*"
        if ownConnection, let link = try? FeedLink(connection: connection, inboxSubject: subject) {
            self.link = link
            subscription = nil
            return
        }
        link = nil
        var sub: OpaquePointer?
        let status = natsConnection_SubscribeSync(&sub, connection.handle, subject)
        guard status == NATS_OK, let sub else { throw coreError(status, "subscribe to \(subject)", subject: subject) }
        // A full batch for every consumer fits: what nats.c would drop here is lost to the
        // consumer until its ack wait passes.
        _ = natsSubscription_SetPendingLimits(sub, Int32(clamping: max(65_536, batch * consumers.count * 2)), 256 << 20)
        subscription = SubscriptionHandle(sub, name: "pull feed of \(stream)")
    }

    /// True when the feed reads over a connection of its own (see `FeedLink`).
    public var hasOwnConnection: Bool { link != nil }

    /// Tops up every consumer's requests, waits at most `timeout` for the first message or
    /// status, then takes up to `limit` messages that are already queued, and tops up again.
    public func read(limit: Int, timeout: Duration) throws -> Batch {
        try topUp()
        if let link {
            var batch = state.withLock { state in
                defer { state.deferred = Batch() }
                return state.deferred
            }
            let wait = batch.messages.isEmpty && batch.gone.isEmpty ? timeout : .zero
            _ = try link.read(limit: max(0, limit - batch.messages.count), timeout: wait) { message, bytes in
                try take(message, in: bytes, into: &batch)
            }
            try topUp()
            return batch
        }
        guard let subscription else { return Batch() }
        var batch = Batch()
        var waited = false
        while batch.messages.count < limit {
            let wait: Int64 = waited ? 0 : timeout.natsTimeoutMilliseconds
            waited = true
            guard let msg = try subscription.nextMessage(timeoutMilliseconds: wait) else { break }
            defer { released.release(msg) }
            try take(msg, into: &batch)
        }
        try topUp()
        return batch
    }

    /// Consumer `index` was bound again (recreated): its old requests are gone, new ones go
    /// out on the next `read`.
    public func restart(_ index: Int) {
        state.withLock { state in
            state.gone[index] = false
            state.credits[index].reset(at: .now)
        }
    }

    /// Slot `index` now reads consumer `name` (a consumer of a new term): requests for it go
    /// out on the next `read`; what the old consumer still delivers is dropped.
    public func restart(_ index: Int, consumer name: String) throws {
        try JetStream.validateStreamName(name, what: "consumer name")
        state.withLock { state in
            if let old = state.consumerIndex.first(where: { $0.value == index })?.key { state.consumerIndex[old] = nil }
            state.consumerIndex[name] = index
            state.requestSubjects[index] = "$JS.API.CONSUMER.MSG.NEXT.\(stream).\(name)"
            state.generations[index] += 1
            state.gone[index] = false
            state.credits[index].reset(at: .now)
        }
    }

    /// Slot `index` gets no more requests, and what its consumer still delivers is dropped;
    /// `restart` takes it up again.
    public func pause(_ index: Int) {
        state.withLock { state in
            if let old = state.consumerIndex.first(where: { $0.value == index })?.key { state.consumerIndex[old] = nil }
            state.gone[index] = true
            state.credits[index].reset(at: .now)
        }
    }

    /// Acks `message` (and, for an ack-all consumer, everything before it).
    public func ack(_ message: Message) throws { try send(message.ackSubject, payload: Self.ackBody) }

    /// Tells the server `message` is still being worked on, resetting its ack wait.
    public func inProgress(_ message: Message) throws { try send(message.ackSubject, payload: Self.inProgressBody) }

    /// Publishes a delivery on the feed's own connection, written with the next read, ack or
    /// flush; `flushDeliveries` confirms it. Only when `hasOwnConnection`.
    public func publishDelivery(_ subject: String, payload: [UInt8]) {
        link?.publish(subject, payload: payload, confirmable: true)
    }

    /// Returns once the server has every delivery published since the last flush; throws when
    /// that is not known (the connection failed or was re-established since): publish them again.
    public func flushDeliveries(timeout: Duration) throws {
        guard let link else { return }
        var arrived = Batch()
        try link.flush(timeout: timeout) { message, bytes in try take(message, in: bytes, into: &arrived) }
        if !arrived.messages.isEmpty || !arrived.gone.isEmpty {
            state.withLock { state in
                state.deferred.messages += arrived.messages
                state.deferred.gone += arrived.gone
            }
        }
    }

    /// Stops the feed; unacked messages are redelivered after their ack wait. Idempotent.
    public func close() {
        subscription?.unsubscribe()
        link?.close()
    }

    private func send(_ subject: String, payload: [UInt8]) throws {
        guard let link else { return try connection.publish(subject, payload: payload) }
        link.publish(subject, payload: payload)
        try link.send()
    }

    private static let ackBody = Array("+ACK".utf8)
    private static let inProgressBody = Array("+WPI".utf8)

    private func take(_ msg: OpaquePointer, into batch: inout Batch) throws {
        let now = ContinuousClock.now
        if let reply = natsMsg_GetReply(msg), strncmp(reply, "$JS.ACK.", 8) == 0 {
            // Nil: a consumer the feed no longer reads (paused, or a former term's).
            let message = try Self.message(msg, ackSubject: String(cString: reply)) { consumer in
                state.withLock { state in
                    guard let index = state.consumerIndex[consumer] else { return nil }
                    state.credits[index].received(at: now)
                    return index
                }
            }
            if let message { batch.messages.append(message) }
            return
        }
        let headers = CMessage.headers(msg)
        status(on: CMessage.subject(msg), code: headers["Status"].flatMap { Int($0) }, description: headers["Description"] ?? "", at: now, into: &batch)
    }

    /// A message of the feed's own connection (see `take(_:into:)`), read in place.
    private func take(_ message: ServerMessage, in bytes: UnsafeBufferPointer<UInt8>, into batch: inout Batch) throws {
        let now = ContinuousClock.now
        if let reply = message.reply, let ack = JetStreamAckSubject(UnsafeBufferPointer(rebasing: bytes[reply])) {
            let ackSubject = String(decoding: bytes[reply], as: UTF8.self)
            let consumer = String(decoding: bytes[(reply.lowerBound + ack.consumerToken.lowerBound)..<(reply.lowerBound + ack.consumerToken.upperBound)], as: UTF8.self)
            // Nil: a consumer the feed no longer reads (paused, or a former term's).
            guard let index = state.withLock({ state -> Int? in
                guard let index = state.consumerIndex[consumer] else { return nil }
                state.credits[index].received(at: now)
                return index
            }) else { return }
            let metadata = JetStreamMessage.Metadata(
                streamSequence: ack.streamSequence, consumerSequence: ack.consumerSequence, numDelivered: ack.numDelivered,
                numPending: ack.numPending, timestampNs: ack.timestampNs, stream: stream, consumer: consumer
            )
            batch.messages.append(Message(consumer: index, subject: String(decoding: bytes[message.subject], as: UTF8.self),
                                          payload: Array(bytes[message.payload]), ackSubject: ackSubject, metadata: metadata))
            return
        }
        let headers = message.headers.map { UnsafeBufferPointer(rebasing: bytes[$0]) }
        status(on: String(decoding: bytes[message.subject], as: UTF8.self), code: headers.flatMap(HeaderBlock.status),
               description: headers.map(HeaderBlock.statusDescription) ?? "", at: now, into: &batch)
    }

    /// A status on <inbox>.<slot>_<generation>, about the slot's current consumer or not.
    private func status(on subject: String, code: Int?, description: String, at now: ContinuousClock.Instant, into batch: inout Batch) {
        guard subject.hasPrefix(inbox + ".") else { return }
        let token = subject.dropFirst(inbox.count + 1).split(separator: "_")
        guard token.count == 2, let index = Int(token[0]), let generation = Int(token[1]),
              state.withLock({ $0.gone.indices.contains(index) && !$0.gone[index] && $0.generations[index] == generation }) else { return }
        switch code ?? 0 {
        case 100:
            state.withLock { $0.credits[index].heard(at: now) }
        case 503:
            markGone(index, at: now)
            batch.gone.append((index, "no responder for its pull requests (the consumer does not exist)"))
        case 409 where description.localizedCaseInsensitiveContains("deleted"):
            markGone(index, at: now)
            batch.gone.append((index, description))
        default:
            // 408 (expired), 409 (leadership change, too many requests, …): that request is done.
            state.withLock { $0.credits[index].ended(at: now) }
        }
    }

    private func markGone(_ index: Int, at now: ContinuousClock.Instant) {
        state.withLock { state in
            state.gone[index] = true
            state.credits[index].reset(at: now)
        }
    }

    /// The delivered message, for the slot `slot` gives its consumer's name; nil when it gives none.
    private static func message(_ msg: OpaquePointer, ackSubject: String, slot: (String) -> Int?) throws -> Message? {
        var meta: UnsafeMutablePointer<jsMsgMetaData>?
        let status = natsMsg_GetMetaData(&meta, msg)
        guard status == NATS_OK, let meta else {
            throw NATSError.malformedResponse(operation: "reading JetStream metadata", reason: "reply subject \(ackSubject): \(statusText(status))")
        }
        defer { jsMsgMetaData_Destroy(meta) }
        let consumer = meta.pointee.Consumer.map { String(cString: $0) } ?? ""
        guard let index = slot(consumer) else { return nil }
        let metadata = JetStreamMessage.Metadata(
            streamSequence: meta.pointee.Sequence.Stream, consumerSequence: meta.pointee.Sequence.Consumer,
            numDelivered: meta.pointee.NumDelivered, numPending: meta.pointee.NumPending, timestampNs: meta.pointee.Timestamp,
            stream: meta.pointee.Stream.map { String(cString: $0) } ?? "", consumer: consumer
        )
        return Message(consumer: index, subject: CMessage.subject(msg), payload: CMessage.payload(msg), ackSubject: ackSubject, metadata: metadata)
    }

    /// Sends a request for every consumer whose open credit ran low. After the connection
    /// was re-established, every consumer's requests are taken as gone.
    private func topUp() throws {
        let now = ContinuousClock.now
        // Requests of a connection that was re-established are gone.
        let checkReconnects = link != nil || state.withLock { now - $0.reconnectsChecked >= .milliseconds(250) }
        let reconnects = checkReconnects ? (link.map { UInt64($0.generation) } ?? connection.reconnectCount) : nil
        let due: [(Int, String, String)] = state.withLock { state in
            if let reconnects {
                state.reconnectsChecked = now
                if reconnects != state.reconnects {
                    state.reconnects = reconnects
                    for index in state.credits.indices { state.credits[index].reset(at: now) }
                }
            }
            return state.credits.indices.filter { !state.gone[$0] && state.credits[$0].needsRequest(at: now) }
                .map { ($0, state.requestSubjects[$0], "\(inbox).\($0)_\(state.generations[$0])") }
        }
        for (index, subject, reply) in due {
            if let link {
                link.publish(subject, reply: reply, payload: requestBody)  // written with the read that follows
            } else {
                try connection.publish(subject, payload: requestBody, reply: reply)
            }
            state.withLock { $0.credits[index].requested(at: now) }
        }
    }
}

extension NATSConnection {
    /// How many times the connection was re-established since it was opened.
    public var reconnectCount: UInt64 {
        var stats: OpaquePointer?
        guard natsStatistics_Create(&stats) == NATS_OK, let stats else { return 0 }
        defer { natsStatistics_Destroy(stats) }
        guard natsConnection_GetStats(handle, stats) == NATS_OK else { return 0 }
        var reconnects: UInt64 = 0
        _ = natsStatistics_GetCounts(stats, nil, nil, nil, nil, &reconnects)
        return reconnects
    }
}
