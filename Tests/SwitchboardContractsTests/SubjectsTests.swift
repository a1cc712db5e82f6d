import SwitchboardContracts
import Testing

/// Whether `subject` matches the NATS subject filter `filter` (`*` one token, `>` the rest).
func subject(_ subject: String, matches filter: String) -> Bool {
    let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
    let pattern = filter.split(separator: ".", omittingEmptySubsequences: false)
    for (index, part) in pattern.enumerated() {
        if part == ">" { return tokens.count > index }
        guard index < tokens.count, part == "*" || part == tokens[index] else { return false }
    }
    return tokens.count == pattern.count
}

@Suite struct SubjectsTests {
    static let channels = ["general", "a", "Room-9", "user_42", String(repeating: "x", count: 64)] + (0..<200).map { "ch\($0)" }

    @Test func subjectsFollowTheContract() {
        let p = Partitioner.partition(of: "general", count: 16)
        #expect(Subjects.event(channel: "general", partitionCount: 16) == "chat.events.\(p).general")
        #expect(Subjects.membership(channel: "general", user: "alice", partitionCount: 16) == "chat.membership.\(p).general.alice")
        #expect(Subjects.typing(channel: "general", partitionCount: 16) == "chat.typing.\(p).general")
        #expect(Subjects.inbox(instance: "n1") == "notify.inbox.n1")
        #expect(Subjects.deadLetter(partition: 3) == "chat.dlq.3")
    }

    @Test func membershipSubjectsAreReadFromRawBytes() {
        func partition(_ subject: String) -> Int? {
            var subject = subject
            return subject.withUTF8 { Subjects.membershipPartition($0) }
        }
        func matches(_ subject: String, _ partition: Int, _ channel: String, _ user: String) -> Bool {
            var subject = subject
            return subject.withUTF8 { Subjects.isMembership($0, partition: partition, channel: channel, user: user) }
        }
        #expect(partition("chat.membership.7.general.alice") == 7)
        #expect(partition("chat.membership.12.general.alice") == 12)
        for bad in ["chat.membership.x.general.alice", "chat.membership..general.alice", "chat.membership.7", "chat.membership.",
                    "chat.membership.+7.general.alice", "chat.membership.1234567890.general.alice", "chat.events.1.general", ""] {
            #expect(partition(bad) == nil, "\(bad)")
        }
        #expect(matches("chat.membership.7.general.alice", 7, "general", "alice"))
        #expect(matches("chat.membership.7.general._", 7, "general", Subjects.channelDeletedUser))
        #expect(!matches("chat.membership.7.general.alice", 8, "general", "alice"))
        #expect(!matches("chat.membership.7.general.alice", 7, "genera", "alice"))
        #expect(!matches("chat.membership.7.general.alice", 7, "general", "alic"))
        #expect(!matches("chat.membership.7.general.alice", 7, "general", "alice2"))
        #expect(!matches("chat.membership.7.general.alice.x", 7, "general", "alice"))
        #expect(!matches("chat.membership.7.general", 7, "general", ""))
    }

    @Test func derivedSubjectsAndNamesFollowTheContract() {
        #expect(Subjects.events(partition: 7) == "chat.events.7.*")
        #expect(Subjects.typing(partition: 7) == "chat.typing.7.*")
        #expect(Subjects.allInboxes == "notify.inbox.*")
        #expect(Subjects.inboxInstance("notify.inbox.n1") == "n1")
        #expect(Subjects.inboxInstance("chat.events.1.general") == nil)
        #expect(SnapshotSubjects.manifest(partition: 3) == "routing.snapshot.3.manifest")
        #expect(SnapshotSubjects.chunk(partition: 3, generation: 42, index: 0) == "routing.snapshot.3.42.0")
        #expect(SnapshotSubjects.generation(partition: 3, generation: 42) == "routing.snapshot.3.42.>")
        #expect(ConsumerNames.fanout(partition: 5) == "fanout-p5")
        #expect(ConsumerNames.fanout(partition: 5).hasPrefix(ConsumerNames.fanoutPrefix))
        #expect(Inspection.statsSubject == "routing.inspect.stats")
        #expect([Inspection.userSubject, Inspection.channelSubject, Inspection.instancesSubject] == ["routing.inspect.user", "routing.inspect.channel", "routing.inspect.instances"])
    }

    @Test func builtMembershipSubjectsParseBackToTheirPartitionChannelAndUser() {
        for count in [1, 7, 16, 1000] {
            for channel in Self.channels {
                let p = Partitioner.partition(of: channel, count: count)
                for user in ["alice", "u-1", Subjects.channelDeletedUser] {
                    let built = Subjects.membership(channel: channel, user: user, partitionCount: count)
                    var bytesOfBuilt = built
                    bytesOfBuilt.withUTF8 { bytes in
                        #expect(Subjects.membershipPartition(bytes) == p, "\(built)")
                        #expect(Subjects.isMembership(bytes, partition: p, channel: channel, user: user), "\(built)")
                        #expect(!Subjects.isMembership(bytes, partition: p, channel: channel, user: user + "x"), "\(built)")
                        #expect(!Subjects.isMembership(bytes, partition: p + 1, channel: channel, user: user), "\(built)")
                    }
                }
                var event = Subjects.event(channel: channel, partitionCount: count)
                event.withUTF8 { #expect(Subjects.membershipPartition($0) == nil) }
            }
        }
    }

    @Test func builtSubjectsFallUnderTheirStreamAndPartitionFilters() throws {
        let events = try #require(StreamNames.subjects[StreamNames.events])
        let membership = try #require(StreamNames.subjects[StreamNames.membership])
        let deadLetters = try #require(StreamNames.subjects[StreamNames.deadLetters])
        let snapshots = try #require(StreamNames.subjects[StreamNames.snapshots])
        for channel in Self.channels {
            let p = Partitioner.partition(of: channel, count: 16)
            let event = Subjects.event(channel: channel, partitionCount: 16)
            #expect(events.contains { subject(event, matches: $0) })
            #expect(subject(event, matches: Subjects.events(partition: p)))
            #expect(!subject(event, matches: Subjects.events(partition: (p + 1) % 16)))
            #expect(!membership.contains { subject(event, matches: $0) })
            let fact = Subjects.membership(channel: channel, user: "alice", partitionCount: 16)
            #expect(membership.contains { subject(fact, matches: $0) })
            #expect(!events.contains { subject(fact, matches: $0) })
            #expect(subject(Subjects.typing(channel: channel, partitionCount: 16), matches: Subjects.typing(partition: p)))
        }
        #expect(deadLetters.contains { subject(Subjects.deadLetter(partition: 3), matches: $0) })
        for built in [SnapshotSubjects.manifest(partition: 3), SnapshotSubjects.chunk(partition: 3, generation: 9, index: 2)] {
            #expect(snapshots.contains { subject(built, matches: $0) })
        }
        #expect(subject(SnapshotSubjects.chunk(partition: 3, generation: 9, index: 2), matches: SnapshotSubjects.generation(partition: 3, generation: 9)))
        #expect(!subject(SnapshotSubjects.manifest(partition: 3), matches: SnapshotSubjects.generation(partition: 3, generation: 9)))
        #expect(subject(Subjects.inbox(instance: "n1"), matches: Subjects.allInboxes))
    }

    @Test func presenceKeysAndHeadersFollowTheContract() {
        #expect(PresenceKeys.users(instance: "n1") == "presence:n1")
        #expect(PresenceKeys.epoch(instance: "n1") == "epoch:n1")
        #expect(PresenceKeys.instances == "instances")
        #expect(PresenceKeys.channel == "presence")
        #expect(InboxKind.header == "Switchboard-Kind")
        #expect([HeaderNames.reason, HeaderNames.subject, HeaderNames.streamSequence] == ["Switchboard-Reason", "Switchboard-Subject", "Switchboard-Stream-Seq"])
        #expect([CloseCode.reconnect, CloseCode.heartbeatTimeout, CloseCode.slowConsumer, CloseCode.messageTooBig] == [4000, 4001, 4008, 1009])
    }
}
