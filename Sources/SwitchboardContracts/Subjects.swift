/// The NATS subjects of the contract: what upstream publishers, the fan-out and the notifiers
/// publish and subscribe to. `<p>` is `Partitioner.partition(of: channel, count: P)`.
public enum Subjects {
    /// User token of a channel-deletion fact on the membership stream.
    public static let channelDeletedUser = "_"

    static let eventsRoot = "chat.events"
    static let membershipRoot = "chat.membership"
    static let typingRoot = "chat.typing"
    static let deadLetterRoot = "chat.dlq"
    static let inboxRoot = "notify.inbox"

    /// `chat.events.<p>.<channel>`: one chat event (stream `CHAT_EVENTS`).
    public static func event(channel: String, partitionCount: Int) -> String {
        "\(eventsRoot).\(Partitioner.partition(of: channel, count: partitionCount)).\(channel)"
    }

    /// `chat.events.<p>.*`: every event of one partition (a fan-out consumer's filter).
    public static func events(partition: Int) -> String { "\(eventsRoot).\(partition).*" }

    /// `chat.membership.<p>.<channel>.<user>`: one membership fact (stream `CHAT_MEMBERSHIP`).
    public static func membership(channel: String, user: String, partitionCount: Int) -> String {
        "\(membershipRoot).\(Partitioner.partition(of: channel, count: partitionCount)).\(channel).\(user)"
    }

    /// `chat.typing.<p>.<channel>`: an ephemeral typing indicator (core NATS, never stored).
    public static func typing(channel: String, partitionCount: Int) -> String {
        "\(typingRoot).\(Partitioner.partition(of: channel, count: partitionCount)).\(channel)"
    }

    /// `chat.typing.<p>.*`: every typing indicator of one partition.
    public static func typing(partition: Int) -> String { "\(typingRoot).\(partition).*" }

    /// `notify.inbox.<instance>`: the one subscription of a notifier instance.
    public static func inbox(instance: String) -> String { "\(inboxRoot).\(instance)" }

    /// `notify.inbox.*`: every instance's inbox (taps in tests and benchmarks).
    public static let allInboxes = "\(inboxRoot).*"

    /// The instance named by an inbox subject, or nil for any other subject.
    public static func inboxInstance(_ subject: String) -> Substring? {
        let prefix = "\(inboxRoot)."
        guard subject.hasPrefix(prefix) else { return nil }
        return subject.dropFirst(prefix.count)
    }

    /// `chat.dlq.<p>`: events of partition `p` that could not be routed (stream `CHAT_DLQ`).
    public static func deadLetter(partition: Int) -> String { "\(deadLetterRoot).\(partition)" }

    /// The partition of `chat.membership.<p>.<channel>.<user>` read from raw bytes, or nil for
    /// any other shape. Allocates nothing: a cold start reads millions of these.
    @inlinable
    public static func membershipPartition(_ subject: UnsafeBufferPointer<UInt8>) -> Int? {
        partitionToken(subject)?.value
    }

    /// Whether `subject` is exactly `chat.membership.<partition>.<channel>.<user>` (raw bytes, no
    /// allocation).
    @inlinable
    public static func isMembership(_ subject: UnsafeBufferPointer<UInt8>, partition: Int, channel: String, user: String) -> Bool {
        guard let token = partitionToken(subject), token.value == partition else { return false }
        var cursor = token.end
        func consume(_ piece: String.UTF8View) -> Bool {
            for byte in piece {
                guard cursor < subject.count, subject[cursor] == byte else { return false }
                cursor += 1
            }
            return true
        }
        return consume(channel.utf8) && consume(".".utf8) && consume(user.utf8) && cursor == subject.count
    }

    @usableFromInline
    static let membershipPrefix = Array("\(membershipRoot).".utf8)

    /// The decimal partition token after `chat.membership.` and the index just past its dot.
    @inlinable
    static func partitionToken(_ subject: UnsafeBufferPointer<UInt8>) -> (value: Int, end: Int)? {
        let prefix = membershipPrefix
        guard subject.count > prefix.count, subject.starts(with: prefix) else { return nil }
        var value = 0
        var cursor = prefix.count
        while cursor < subject.count, subject[cursor] != UInt8(ascii: ".") {
            let digit = Int(subject[cursor]) - Int(UInt8(ascii: "0"))
            guard (0...9).contains(digit), cursor - prefix.count < 9 else { return nil }
            value = value * 10 + digit
            cursor += 1
        }
        guard cursor > prefix.count, cursor < subject.count else { return nil }
        return (value, cursor + 1)
    }
}

/// Subjects of the `ROUTING_SNAPSHOTS` stream: per partition `p`, an image's chunks on
/// `routing.snapshot.<p>.<generation>.<index>` and its manifest on `routing.snapshot.<p>.manifest`;
/// per replica, the user dictionary its images refer to, in two slots (one being written while
/// the other may still be referenced) on `routing.snapshot.users.<replica>.<slot>.<segment>`.
public enum SnapshotSubjects {
    static let root = "routing.snapshot"

    public static func manifest(partition: Int) -> String { "\(root).\(partition).manifest" }

    public static func chunk(partition: Int, generation: UInt64, index: Int) -> String {
        "\(root).\(partition).\(generation).\(index)"
    }

    /// Every chunk of one generation (what is purged once a newer manifest is written).
    public static func generation(partition: Int, generation: UInt64) -> String {
        "\(root).\(partition).\(generation).>"
    }

    /// `replica` is a hash of the replica id (any string), so it is always one subject token.
    public static func dictionarySegment(replica: String, slot: String, index: Int) -> String {
        "\(root).users.\(replica).\(slot).\(index)"
    }

    /// Every segment of one dictionary slot (purged before a new lineage is written into it).
    public static func dictionarySlot(replica: String, slot: String) -> String {
        "\(root).users.\(replica).\(slot).>"
    }
}

/// JetStream consumer names that other processes look up (benchmarks and tests read their lag).
public enum ConsumerNames {
    /// Prefix of the fan-out's durable pull consumers on `CHAT_EVENTS`.
    public static let fanoutPrefix = "fanout-p"

    /// `fanout-p<p>`: the durable consumer of partition `p` before replicas held leases
    /// (a replica taking the partition over also takes over from this one).
    public static func fanout(partition: Int) -> String { "\(fanoutPrefix)\(partition)" }

    /// `fanout-p<p>-<term>`: partition `p`'s consumer for one lease term. Every term has a
    /// consumer of its own, so an ack a former holder sent late (buffered across a reconnect,
    /// or sent after a pause) names a consumer that no longer exists instead of moving the
    /// new holder's ack floor.
    public static func fanout(partition: Int, term: String) -> String { "\(fanoutPrefix)\(partition)-\(term)" }
}

/// `fanout.lease.<p>`: the lease of partition `p` in `FANOUT_LEASES` (one message per
/// subject; its stream sequence is the lease's revision).
public enum LeaseSubjects {
    public static let all = "fanout.lease.*"
    static let root = "fanout.lease."

    public static func lease(partition: Int) -> String { "\(root)\(partition)" }

    /// The partition a lease subject names, nil for any other subject.
    public static func partition(of subject: String) -> Int? {
        guard subject.hasPrefix(root), let partition = Int(subject.dropFirst(root.count)), partition >= 0 else { return nil }
        return partition
    }
}
