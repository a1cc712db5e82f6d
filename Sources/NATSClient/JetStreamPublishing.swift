import CNATS
import Synchronization

extension JetStream {

    /// Stores a message and waits for the server's ack. With `msgID`, the message carries
    /// `Nats-Msg-Id` and the server drops a duplicate inside the stream's duplicate window.
    public func publish(_ subject: String, payload: [UInt8], msgID: String? = nil, headers: NATSHeaders? = nil, timeout: Duration? = nil) throws -> PublishAck {
        let wait = (timeout ?? self.timeout).natsTimeoutMilliseconds
        var ack: UnsafeMutablePointer<jsPubAck>?
        var code = jsErrCode(0)
        let status = try withOptionalCString(msgID) { cMsgID in
            var publishOptions = jsPubOptions()
            jsPubOptions_Init(&publishOptions)
            publishOptions.MaxWait = wait
            publishOptions.MsgId = cMsgID
            return try payload.withUnsafeBytes { bytes in
                if let headers, !headers.isEmpty {
                    let msg = try CMessage.make(subject: subject, reply: nil, payload: bytes, headers: headers)
                    defer { natsMsg_Destroy(msg) }
                    return js_PublishMsg(&ack, context, msg, &publishOptions, &code)
                }
                return try withPayload(bytes) { data, length in
                    js_Publish(&ack, context, subject, data, length, &publishOptions, &code)
                }
            }
        }
        guard status == NATS_OK, let ack else {
            throw jetStreamError(status, code: code, "publish to \(subject)", subject: subject)
        }
        defer { jsPubAck_Destroy(ack) }
        return PublishAck(
            stream: ack.pointee.Stream.map { String(cString: $0) } ?? "",
            sequence: ack.pointee.Sequence,
            duplicate: ack.pointee.Duplicate
        )
    }

    /// Publishes without waiting for the ack (for loaders and benchmarks). At most the
    /// context's `maxPendingAsyncPublishes` acks are outstanding; past that this call waits
    /// up to the context's timeout. Failures surface in `publishAsyncComplete`.
    public func publishAsync(_ subject: String, payload: [UInt8], msgID: String? = nil) throws {
        let status = try withOptionalCString(msgID) { cMsgID in
            var publishOptions = jsPubOptions()
            jsPubOptions_Init(&publishOptions)
            publishOptions.MsgId = cMsgID
            return try payload.withUnsafeBytes { bytes in
                try withPayload(bytes) { data, length in
                    js_PublishAsync(context, subject, data, length, &publishOptions)
                }
            }
        }
        try check(status, "asynchronous publish to \(subject)", subject: subject)
    }

    /// Waits until every `publishAsync` so far is acked, then throws if any failed since the
    /// previous call (with the count and the first failure).
    public func publishAsyncComplete(timeout: Duration) throws {
        var publishOptions = jsPubOptions()
        jsPubOptions_Init(&publishOptions)
        publishOptions.MaxWait = timeout.natsTimeoutMilliseconds
        let status = js_PublishAsyncComplete(context, &publishOptions)
        let failures = asyncPublishFailures.take(asyncFailureID)
        if failures.count > 0 {
            throw NATSError.jetStream(
                operation: "asynchronous publish",
                code: failures.firstCode,
                description: "\(failures.count) message(s) not stored; first: \(failures.first ?? "unknown")"
            )
        }
        if status == NATS_TIMEOUT {
            throw NATSError.timeout(operation: "waiting for asynchronous publish acks within \(timeout)")
        }
        try check(status, "waiting for asynchronous publish acks")
    }

}

/// Failures of `publishAsync`, per JetStream context. nats.c reports them on its own thread
/// through a C callback whose closure is the context's registry id (an integer, not a
/// pointer), so a callback that races the context's deinit finds no entry instead of freed memory.
final class AsyncPublishFailures: Sendable {
    struct Entry {
        var count = 0
        var first: String?
        var firstCode = 0
    }

    private struct Registry {
        var entries: [UInt: Entry] = [:]
        var nextID: UInt = 1
    }

    private let registry = Mutex(Registry())

    func register() -> UInt {
        registry.withLock { registry in
            let id = registry.nextID
            registry.nextID += 1
            registry.entries[id] = Entry()
            return id
        }
    }

    func unregister(_ id: UInt) {
        registry.withLock { _ = $0.entries.removeValue(forKey: id) }
    }

    func record(_ id: UInt, _ text: String, code: Int) {
        registry.withLock { registry in
            guard var entry = registry.entries[id] else { return }
            entry.count += 1
            if entry.first == nil {
                entry.first = text
                entry.firstCode = code
            }
            registry.entries[id] = entry
        }
    }

    /// The failures since the last call, resetting them.
    func take(_ id: UInt) -> Entry {
        registry.withLock { registry in
            let entry = registry.entries[id] ?? Entry()
            if registry.entries[id] != nil { registry.entries[id] = Entry() }
            return entry
        }
    }
}

let asyncPublishFailures = AsyncPublishFailures()

let recordAsyncPublishFailure: jsPubAckErrHandler = { _, failure, closure in
    guard let failure else { return }
    let id = UInt(bitPattern: closure)
    let subject = failure.pointee.Msg.map { CMessage.subject($0) } ?? "?"
    let text = failure.pointee.ErrText.map { String(cString: $0) } ?? String(cString: natsStatus_GetText(failure.pointee.Err))
    let code = failure.pointee.ErrCode.rawValue != 0 ? Int(failure.pointee.ErrCode.rawValue) : Int(failure.pointee.Err.rawValue)
    asyncPublishFailures.record(id, "\(subject): \(text)", code: code)
}
