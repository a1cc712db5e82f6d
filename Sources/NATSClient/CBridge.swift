import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The boundary with nats.c: every status becomes a `NATSError` here, durations become the
// milliseconds/nanoseconds nats.c expects, and C messages become Swift values. Nothing in
// this file is public.

/// nats.c's global state, opened once (lazily and thread-safely, as every Swift global).
/// `-1` keeps the library's default lock spin count.
let natsLibraryStatus: natsStatus = nats_Open(-1)

func openLibrary() throws {
    guard natsLibraryStatus == NATS_OK else {
        throw NATSError.failed(operation: "initialising nats.c", status: statusText(natsLibraryStatus))
    }
}

/// The status text, plus the thread's last-error detail when it is about the same status
/// and says more.
func statusText(_ status: natsStatus) -> String {
    let text = String(cString: natsStatus_GetText(status))
    if let detail = lastError(status), detail != text { return "\(text): \(detail)" }
    return text
}

/// The thread's last-error text alone (nats.c puts the JetStream API's description there).
func lastErrorDetail(_ status: natsStatus) -> String {
    lastError(status) ?? String(cString: natsStatus_GetText(status))
}

/// nats.c's last error on this thread if it is about `status`, without its "(file.c:123): "
/// source-location prefix.
private func lastError(_ status: natsStatus) -> String? {
    var lastStatus = NATS_OK
    guard let detail = nats_GetLastError(&lastStatus), lastStatus == status else { return nil }
    var text = Substring(String(cString: detail))
    if text.hasPrefix("("), let end = text.firstRange(of: "): ") {
        text = text[end.upperBound...]
    }
    return text.isEmpty ? nil : String(text)
}

/// Maps a failed status of a core NATS call to the matching error case.
func coreError(_ status: natsStatus, _ operation: @autoclosure () -> String, subject: String? = nil) -> NATSError {
    switch status {
    case NATS_TIMEOUT: return .timeout(operation: operation())
    case NATS_NO_RESPONDERS: return .noResponders(subject: subject ?? operation())
    case NATS_CONNECTION_CLOSED: return .connectionClosed(operation: operation())
    case NATS_SLOW_CONSUMER: return .messagesDropped(operation: operation())
    case NATS_INVALID_SUBJECT, NATS_INVALID_ARG: return .invalidArgument("\(operation()): \(statusText(status))")
    default: return .failed(operation: operation(), status: statusText(status))
    }
}

/// Maps a failed status of a JetStream call (with the API error code nats.c extracted, 0
/// when there was none) to the matching error case.
func jetStreamError(_ status: natsStatus, code: jsErrCode, _ operation: @autoclosure () -> String, subject: String? = nil) -> NATSError {
    if status == NATS_NO_RESPONDERS { return .noResponders(subject: subject ?? operation()) }
    if code.rawValue != 0 {
        return .jetStream(operation: operation(), code: Int(code.rawValue), description: lastErrorDetail(status))
    }
    return coreError(status, operation(), subject: subject)
}

@inline(__always)
func check(_ status: natsStatus, _ operation: @autoclosure () -> String, subject: String? = nil) throws {
    if status != NATS_OK { throw coreError(status, operation(), subject: subject) }
}

extension Duration {
    /// Whole milliseconds, rounded up so that a short positive timeout never becomes "no wait";
    /// negative durations become 0.
    var natsMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return Int64.max }
        let fraction = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return ms.addingReportingOverflow(fraction).overflow ? Int64.max : ms + fraction
    }

    /// Milliseconds for a wait that must not be zero (nats.c treats 0 as "do not wait" or
    /// "no timeout" depending on the call).
    var natsTimeoutMilliseconds: Int64 { Swift.max(1, natsMilliseconds) }

    /// Nanoseconds, as the JetStream API's durations (negative becomes 0).
    var natsNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return Int64.max }
        return ns.addingReportingOverflow(attoseconds / 1_000_000_000).overflow ? Int64.max : ns + attoseconds / 1_000_000_000
    }
}

/// Calls `body` with a C string for `string`, or NULL when it is nil.
func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
    guard let string else { return try body(nil) }
    return try string.withCString { try body($0) }
}

/// Payload bytes as nats.c wants them (a NULL pointer is fine for an empty payload).
@inline(__always)
func withPayload<R>(_ payload: UnsafeRawBufferPointer, _ body: (UnsafeRawPointer?, Int32) throws -> R) throws -> R {
    guard payload.count <= Int(Int32.max) else {
        throw NATSError.invalidArgument("payload of \(payload.count) bytes exceeds the 2 GiB limit of nats.c")
    }
    return try body(payload.baseAddress, Int32(payload.count))
}

/// A nats.c object pointer that may cross threads: nats.c locks every connection, subscription,
/// JetStream context and message internally, so its owners only need the pointer to be shareable.
struct CHandle: @unchecked Sendable {  // nats.c locks each object internally
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

// MARK: - Messages

enum CMessage {
    /// Copies the payload of a natsMsg (one allocation, none for an empty payload).
    static func payload(_ msg: OpaquePointer) -> [UInt8] {
        let length = Int(natsMsg_GetDataLength(msg))
        guard length > 0, let data = natsMsg_GetData(msg) else { return [] }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    static func subject(_ msg: OpaquePointer) -> String {
        natsMsg_GetSubject(msg).map { String(cString: $0) } ?? ""
    }

    static func reply(_ msg: OpaquePointer) -> String? {
        guard let reply = natsMsg_GetReply(msg), reply.pointee != 0 else { return nil }
        return String(cString: reply)
    }

    /// All header fields of `msg`; empty when it has none.
    static func headers(_ msg: OpaquePointer) -> NATSHeaders {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var keyCount: Int32 = 0
        guard natsMsgHeader_Keys(msg, &keys, &keyCount) == NATS_OK, let keys else { return NATSHeaders() }
        defer { free(keys) }
        var headers = NATSHeaders()
        for index in 0..<Int(keyCount) {
            guard let key = keys[index] else { continue }
            var values: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var valueCount: Int32 = 0
            guard natsMsgHeader_Values(msg, key, &values, &valueCount) == NATS_OK, let values else { continue }
            let name = String(cString: key)
            for valueIndex in 0..<Int(valueCount) {
                headers.append(name: name, value: values[valueIndex].map { String(cString: $0) } ?? "")
            }
            free(values)
        }
        return headers
    }

    /// Builds a natsMsg carrying `headers` (the caller destroys it, or hands it to a call that
    /// takes ownership).
    static func make(subject: String, reply: String?, payload: UnsafeRawBufferPointer, headers: NATSHeaders) throws -> OpaquePointer {
        try headers.validate()
        var msg: OpaquePointer?
        let status = try withPayload(payload) { data, length in
            withOptionalCString(reply) { natsMsg_Create(&msg, subject, $0, data?.assumingMemoryBound(to: CChar.self), length) }
        }
        guard status == NATS_OK, let msg else { throw coreError(status, "building a message for \(subject)") }
        for field in headers.fields {
            let added = natsMsgHeader_Add(msg, field.name, field.value)
            if added != NATS_OK {
                natsMsg_Destroy(msg)
                throw coreError(added, "setting header \(field.name) on a message for \(subject)")
            }
        }
        return msg
    }
}
