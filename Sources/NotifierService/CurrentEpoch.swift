import Logging
import Synchronization

/// The `CHAT_EVENTS` epoch this notifier serves (`StreamEpoch`): read from the stream at
/// start-up, then taken from every inbox message, which the fan-out stamps with the epoch of
/// its sequences. So a stream created anew under a running notifier is noticed with the first
/// delivery numbered in it, and `hello`, event frames and `resumed` carry the new epoch.
final class CurrentEpoch: Sendable {
    private let value: Mutex<String>

    init(_ initial: String = "") {
        value = Mutex(initial)
    }

    var current: String { value.withLock { $0 } }

    /// Takes the epoch an inbox message carries (empty: the sender did not say); returns
    /// the epoch the message's sequences belong to.
    func observe(_ epoch: String, logger: Logger) -> String {
        guard !epoch.isEmpty else { return current }
        let previous = value.withLock { current -> String? in
            guard current != epoch else { return nil }
            defer { current = epoch }
            return current
        }
        if let previous {
            logger.notice("CHAT_EVENTS epoch changed: sequences are numbered anew", metadata: ["from": "\(previous)", "to": "\(epoch)"])
        }
        return epoch
    }
}
