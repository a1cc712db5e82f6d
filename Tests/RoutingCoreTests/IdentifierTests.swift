import RoutingCore
import Testing

@Suite struct IdentifierTests {
    @Test func acceptsSubjectTokenSafeIDs() {
        for id in ["a", "general", "user_42", "Room-9", String(repeating: "x", count: 64)] {
            #expect(Identifier.isValid(id), "\(id)")
        }
    }

    @Test func rejectsEmptyLongAndUnsafeIDs() {
        for id in ["", String(repeating: "x", count: 65), "a.b", "a b", "a*", "a>", "é", "a\u{0}", "chat.events"] {
            #expect(!Identifier.isValid(id), "\(id)")
            #expect(Identifier.problem(id, kind: "channel") != nil)
        }
    }

    @Test func fnv1aMatchesPublishedTestVectors() {
        #expect(FNV1a.hash32(Array("".utf8)) == 0x811c_9dc5)
        #expect(FNV1a.hash32(Array("a".utf8)) == 0xe40c_292c)
        #expect(FNV1a.hash32(Array("foobar".utf8)) == 0xbf9c_f968)
        #expect(FNV1a.hash64(Array("".utf8)) == 0xcbf2_9ce4_8422_2325)
        #expect(FNV1a.hash64(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        #expect(FNV1a.hash64(Array("foobar".utf8)) == 0x8594_4171_f739_67e8)
    }

    @Test func partitionIsHashModuloCount() {
        #expect(Partitioner.partition(of: "foobar", count: 16) == Int(0xbf9c_f968 % 16))
        #expect(Partitioner.partition(of: "a", count: 7) == Int(0xe40c_292c % 7))
        for count in 1...64 {
            #expect((0..<count).contains(Partitioner.partition(of: "general", count: count)))
        }
    }

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
}

@Suite struct StringInternerTests {
    @Test func internsDenselyAndRoundTrips() {
        var interner = StringInterner()
        let names = (0..<5000).map { "user-\($0)" }
        for (index, name) in names.enumerated() { #expect(interner.intern(name) == UInt32(index)) }
        for (index, name) in names.enumerated() {
            #expect(interner.intern(name) == UInt32(index))
            #expect(interner.id(of: name) == UInt32(index))
            #expect(interner.string(UInt32(index)) == name)
        }
        #expect(interner.count == 5000)
        #expect(interner.id(of: "user-5000") == nil)
        #expect(interner.id(of: "") == nil)
    }
}
