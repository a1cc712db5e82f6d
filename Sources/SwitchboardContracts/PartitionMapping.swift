/// Server-side partitioning: upstream publishers may put events on `chat.events.<channel>` and
/// membership facts on `chat.membership.<channel>.<user>`, and nats-server files each under its
/// partition with its `partition(P, token)` mapping function, which is FNV-1a 32 of the token
/// modulo P (the same as `Partitioner.partition(of:count:)`). nats-server 2.10 and later apply
/// it as a stream subject transform (carried by `streams/*.json`); any version applies it as an
/// account subject mapping (`deploy/nats/partition-mapping.conf`).
public enum PartitionMapping {
    /// One unpartitioned subject filter and the partitioned subject nats-server maps it to.
    public struct Rule: Sendable, Equatable {
        public var source: String
        public var destination: String
    }

    /// The rules for a deployment of `partitionCount` partitions, events first.
    public static func rules(partitionCount: Int) -> [Rule] {
        let partition = "{{partition(\(partitionCount),1)}}"
        return [
            Rule(source: "\(Subjects.eventsRoot).*", destination: "\(Subjects.eventsRoot).\(partition).{{wildcard(1)}}"),
            Rule(source: "\(Subjects.membershipRoot).*.*", destination: "\(Subjects.membershipRoot).\(partition).{{wildcard(1)}}.{{wildcard(2)}}"),
        ]
    }

    /// `chat.events.<channel>`: an event as a publisher without the partition hash sends it.
    public static func unpartitionedEvent(channel: String) -> String { "\(Subjects.eventsRoot).\(channel)" }

    /// `chat.membership.<channel>.<user>`: a membership fact without the partition token.
    public static func unpartitionedMembership(channel: String, user: String) -> String {
        "\(Subjects.membershipRoot).\(channel).\(user)"
    }

    /// The account `mappings` block of `deploy/nats/partition-mapping.conf` (include it in the
    /// account that upstream publishers use, or at the top level for the global account).
    public static func serverConfiguration(partitionCount: Int) -> String {
        var lines = [
            "# Server-side partitioning for nats-server versions without stream subject transforms",
            "# (before 2.10; harmless on later ones). Generated for P = \(partitionCount) (streams/deployment.json);",
            "# the contract tests check this file against SwitchboardContracts.PartitionMapping.",
            "mappings = {",
        ]
        lines += rules(partitionCount: partitionCount).map { "  \"\($0.source)\": \"\($0.destination)\"" }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
