import CNATS

/// Destroys received nats.c messages in groups instead of one by one.
///
/// nats.c frees a received message on its garbage-collector thread and wakes that thread
/// whenever its list was empty (`natsGC_collect`). Destroying each message as soon as it has
/// been read therefore costs a wake-up (two context switches) per message whenever messages
/// arrive slower than that thread runs: on the delivery path, once per event in the fan-out and
/// again in every notifier. Held here, they go to the collector together, one wake-up per group.
///
/// Bounded: at most `limit` messages and about `byteLimit` bytes of payload are held; `flush()`
/// (and deinit) destroys what is left. Used by one thread at a time, the one that reads the
/// messages (a subscription's delivery thread, a feed's reader): there is no lock inside, which
/// is why the Sendable conformance is unchecked.
final class MessageReleaser: @unchecked Sendable {
    static let defaultLimit = 64
    static let defaultByteLimit = 256 << 10

    private let held: UnsafeMutablePointer<OpaquePointer>
    private let limit: Int
    private let byteLimit: Int
    private(set) var count = 0
    private(set) var bytes = 0

    init(limit: Int = defaultLimit, byteLimit: Int = defaultByteLimit) {
        precondition(limit > 0 && byteLimit > 0)
        self.limit = limit
        self.byteLimit = byteLimit
        held = .allocate(capacity: limit)
    }

    deinit {
        destroyHeld()
        held.deallocate()
    }

    /// Takes `msg` (the caller no longer touches it); destroys the group once it is full.
    func release(_ msg: OpaquePointer) {
        held[count] = msg
        count += 1
        bytes += Int(natsMsg_GetDataLength(msg))
        if count == limit || bytes >= byteLimit { flush() }
    }

    /// Destroys every message held.
    func flush() {
        destroyHeld()
        count = 0
        bytes = 0
    }

    private func destroyHeld() {
        for index in 0..<count { natsMsg_Destroy(held[index]) }
    }
}
