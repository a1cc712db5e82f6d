@testable import NATSClient
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
        #expect(parse("$JS.ACK._.ACCHASH.CHAT_MEMBERSHIP.abc123.2.1234567.89.1764000000123456789.42.x9Yz") == original)
        #expect(parse("$JS.ACK.hub.ACCHASH.CHAT_MEMBERSHIP.abc123.2.1234567.89.1764000000123456789.42.x9Yz.more") == original)
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
}
