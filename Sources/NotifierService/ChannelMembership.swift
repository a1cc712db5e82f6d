import NATSClient
import SwitchboardContracts
import SwitchboardProto

/// A user's membership of a channel as `CHAT_MEMBERSHIP` states it. The notifier keeps no
/// membership table; a resume (and the demo's send) asks the stream, which keeps the latest
/// fact per subject.
public enum ChannelMembership {
    public static let stream = StreamNames.membership

    /// True when the user's own latest fact is JOINED and the channel was not deleted after
    /// it. Blocking (JetStream requests): call it off the event loops.
    public static func isMember(channel: String, user: String, partitionCount: Int, in jetStream: JetStream) throws -> Bool {
        try memberSince(channel: channel, user: user, partitionCount: partitionCount, in: jetStream) != nil
    }

    /// When the user's current membership began — the stored time (ns since the Unix epoch) of
    /// its JOINED fact — or nil when the user is not a member. A user's view of a channel
    /// starts with the events stored after it.
    public static func memberSince(channel: String, user: String, partitionCount: Int, in jetStream: JetStream) throws -> Int64? {
        let subject = Subjects.membership(channel: channel, user: user, partitionCount: partitionCount)
        guard let fact = try jetStream.lastMessage(stream: stream, subject: subject),
              let change = try? MembershipChange(decoding: fact.payload), change.state == .joined else { return nil }
        let deletion = Subjects.membership(channel: channel, user: Subjects.channelDeletedUser, partitionCount: partitionCount)
        if let deleted = try jetStream.lastMessage(stream: stream, subject: deletion), deleted.sequence > fact.sequence {
            return nil
        }
        return fact.timestampNs
    }
}
