/// The name of `CHAT_EVENTS`' sequence space. Stream sequences start again at 1 when the
/// stream is created anew (a wiped store, a deleted and re-created stream), so a `seq` only
/// means something together with its epoch: a client that resumes with another epoch's
/// numbering is told so rather than silently dropping the new, lower sequences.
///
/// The epoch is derived from the stream's creation time, so every fan-out replica and
/// notifier reading the same stream names it the same way, with no coordination: the
/// creation time in nanoseconds since the Unix epoch, in base 36 (lowercase), e.g. `"1pk3v0i9x2s4"`.
public enum StreamEpoch {
    public static let maxLength = 64

    /// The epoch of a stream created at `createdNs` (nanoseconds since the Unix epoch).
    public static func of(createdNs: Int64) -> String {
        String(UInt64(bitPattern: max(createdNs, 0)), radix: 36)
    }

    /// 1–64 characters of `[A-Za-z0-9_-]`: what a client may send back.
    public static func isValid(_ epoch: some StringProtocol) -> Bool {
        var count = 0
        for byte in epoch.utf8 {
            count += 1
            let allowed = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            guard count <= maxLength, allowed else { return false }
        }
        return count > 0
    }
}
