@testable import NATSClient
import PropertyBased
import Testing

@Suite struct JetStreamAckSubjectTests {
    func parse(_ subject: String) -> JetStreamAckSubject? {
        var subject = subject
        return subject.withUTF8 { JetStreamAckSubject($0) }
    }

    @Test func readsBothFormsOfTheReplySubject() {
        let original = parse("$JS.ACK.CHAT_MEMBERSHIP.abc123.2.1234567.89.1764000000123456789.42")
        #expect(original.map { [$0.numDelivered, $0.streamSequence, $0.consumerSequence, UInt64($0.timestampNs), $0.numPending] }
                == [2, 1_234_567, 89, 1_764_000_000_123_456_789, 42])
        for subject in ["$JS.ACK._.ACCHASH.CHAT_MEMBERSHIP.abc123.2.1234567.89.1764000000123456789.42.x9Yz",
                        "$JS.ACK.hub.ACCHASH.CHAT_MEMBERSHIP.abc123.2.1234567.89.1764000000123456789.42.x9Yz.more"] {
            var domainForm = parse(subject)
            #expect(domainForm.map { Array(Array(subject.utf8)[$0.consumerToken]) } == Array("abc123".utf8))
            domainForm?.consumerToken = original?.consumerToken ?? 0..<0
            #expect(domainForm == original)
        }
        let originalSubject = "$JS.ACK.CHAT_MEMBERSHIP.abc123.2.1234567.89.1764000000123456789.42"
        #expect(original.map { Array(Array(originalSubject.utf8)[$0.consumerToken]) } == Array("abc123".utf8))
        #expect(parse("$JS.ACK._.ACCHASH.S.C.1.18446744073709551615.1.0.0")?.streamSequence == UInt64.max)
    }

    @Test func refusesWhatIsNotAnAckSubject() {
        for subject in [
            "", "$JS.ACK.", "$JS.API.S.C.1.2.3.4.5", "_INBOX.abc.1_0",
            "$JS.ACK.S.C.1.2.3.4",  // 8 tokens
            "$JS.ACK.S.C.1.2.3.4.5.6",  // 10 tokens
            "$JS.ACK.S.C.1.x.3.4.5", "$JS.ACK.S.C.1.-2.3.4.5", "$JS.ACK.S.C.1..3.4.5", "$JS.ACK..C.1.2.3.4.5",
            "$JS.ACK.S.C.1.18446744073709551616.3.4.5",  // 2^64
            "$JS.ACK.S.C.1.2.3.9223372036854775808.5",  // a timestamp beyond Int64
        ] {
            #expect(parse(subject) == nil, "\(subject)")
        }
    }

    /// The reading of ADR-15 spelled out with `split`: what the parser must agree with.
    static func reference(_ subject: String) -> [UInt64]? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard tokens.count > 2, tokens[0] == "$JS", tokens[1] == "ACK", !tokens.contains(where: \.isEmpty) else { return nil }
        let streamToken: Int
        switch tokens.count {
        case 9: streamToken = 2
        case 11...: streamToken = 4
        default: return nil
        }
        var numbers: [UInt64] = []
        for token in tokens[(streamToken + 2)..<(streamToken + 7)] {
            guard token.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), let value = UInt64(token) else { return nil }
            numbers.append(value)
        }
        return numbers[3] <= UInt64(Int64.max) ? numbers : nil
    }

    @Test func agreesWithASplitReadingOfTheTokens() async {
        let pieces = ["0", "7", "42", "1764000000123456789", "18446744073709551615", "18446744073709551616", "9223372036854775808",
                      "", "S", "x9Yz", "-1", "+5", "1a", "9:", "/0", "$JS", "ACK", "$JS.ACK"]
        await propertyCheck(count: 2000, input: Gen.int(in: 0...pieces.count - 1).array(of: 0...14)) { choices in
            // Mostly well-formed prefixes, so that the token rules are what is exercised.
            let body = choices.map { pieces[$0] }.joined(separator: ".")
            let subject = choices.first.map { $0 % 4 == 0 } ?? false ? body : "$JS.ACK." + body
            let parsed = parse(subject).map { [$0.numDelivered, $0.streamSequence, $0.consumerSequence, UInt64($0.timestampNs), $0.numPending] }
            #expect(parsed == Self.reference(subject), "\(subject)")
            if let token = parse(subject)?.consumerToken {
                let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
                #expect(String(decoding: Array(subject.utf8)[token], as: UTF8.self) == String(tokens[tokens.count == 9 ? 3 : 5]), "\(subject)")
            }
        }
    }
}
