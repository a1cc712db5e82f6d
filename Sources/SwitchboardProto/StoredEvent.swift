import SwitchboardContracts

/// What a message stored in `CHAT_EVENTS` is to the fan-out and to a replay: an event to
/// deliver, or poison that goes to `CHAT_DLQ` (and is not in its channel's chain). Both sides
/// decide it the same way, so a replayed channel's `prev` values match the live ones.
public enum StoredEvent {
    case event(ChatEvent)
    case poison(String)

    /// Poison when undecodable, with an invalid id, or with a `channel_id` that does not give
    /// its subject.
    public static func examine(subject: String, payload: some Collection<UInt8>, partitionCount: Int) -> StoredEvent {
        let event: ChatEvent
        do {
            event = try ChatEvent(decoding: payload)
        } catch {
            return .poison("undecodable ChatEvent: \(error)")
        }
        guard Identifier.isValid(event.channelID) else { return .poison("invalid channel_id '\(event.channelID.prefix(80))'") }
        guard Identifier.isValid(event.senderID) else { return .poison("invalid sender_id '\(event.senderID.prefix(80))'") }
        guard subject == Subjects.event(channel: event.channelID, partitionCount: partitionCount) else {
            return .poison("channel_id \(event.channelID) does not match subject \(subject)")
        }
        return .event(event)
    }
}
