import SwitchboardContracts
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
}
