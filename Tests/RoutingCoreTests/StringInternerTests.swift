import RoutingCore
import Testing

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

    @Test func compactingKeepsEveryStringAndInterningGoesOn() {
        var interner = StringInterner()
        let names = (0..<3000).map { "channel-\($0)" } + ["", String(repeating: "x", count: StringInterner.maxLength)]
        for name in names { _ = interner.intern(name) }
        let before = interner.byteCount
        interner.compact()
        #expect(interner.byteCount < before)
        interner.prefetch(names + ["never interned", ""])
        for (index, name) in names.enumerated() {
            #expect(interner.id(of: name) == UInt32(index))
            #expect(interner.string(UInt32(index)) == name)
        }
        #expect(interner.intern("after") == UInt32(names.count))
        #expect(interner.string(UInt32(names.count)) == "after")
        #expect(interner.id(of: names[1234]) == 1234)
    }
}
