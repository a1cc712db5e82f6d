import Foundation
import Testing
import SwitchboardHarness
@testable import SwitchboardProto

/// Every protobuf message a process reads from NATS or Redis, fuzzed from valid encodings
/// (see FuzzDriver.swift for seeds and time boxes). Each input must decode to a value or a
/// `ProtoError` — typed throws make the error type a compile-time fact, so what these tests
/// check is that nothing traps, that a decoded value is stable (re-encoding and decoding it
/// gives it back) and that it is never larger than the bytes it came from (no input can make
/// a decoder allocate more than it sent).
@Suite struct DecoderFuzzTests {
    /// Resident growth tolerated over one run; the whole test process counts, so generous.
    static let residentGrowthLimit = 128 << 20

    @Test func chatEventDecoderNeverTrapsAndRoundTripsWhatItAccepts() {
        let corpus = [
            ChatEvent(eventID: "e-1", channelID: "general", senderID: "alice", createdAtMs: 1_700_000_000_123, skipSenderEcho: true, body: .messageCreated(messageID: "m1", text: "héllo ✨")),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: -1, body: .messageEdited(messageID: "m", text: "")),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: .max, body: .messageDeleted(messageID: "m2")),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: 0, body: .reaction(messageID: "m3", emoji: "👍", removed: true)),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: 0, body: .readReceipt(messageID: "m4")),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: 0, body: .channelUpdated(name: "general", topic: "news")),
            ChatEvent(eventID: "", channelID: "", senderID: "", createdAtMs: 0, body: nil),
        ].map { $0.encoded() }
        expectClean(FuzzDriver.run("ChatEvent", corpus: corpus, generate: ProtoMutator.generate) { bytes in
            decode(bytes, ChatEvent.init(decoding:)) { event in
                // Invalid UTF-8 is repaired to U+FFFD: 3 bytes for 1 at most.
                let payload = [event.eventID, event.channelID, event.senderID].map(\.utf8.count).reduce(0, +) + bodyBytes(event.body)
                return payload <= bytes.count * 3 ? nil : "decoded \(payload) bytes of strings from \(bytes.count) bytes"
            }
        })
    }

    @Test func deliveryDecoderNeverTrapsAndRoundTripsWhatItAccepts() {
        let event = ChatEvent(eventID: "e", channelID: "room", senderID: "s", createdAtMs: 3, body: .readReceipt(messageID: "m")).encoded()
        let corpus = [
            Delivery(streamSeq: 1, channelID: "c", event: [0x01], slots: [1, 300]),
            Delivery(streamSeq: .max, channelID: "room", event: event, slots: Array(0..<200)),
            Delivery(streamSeq: 0, channelID: "", event: [], slots: []),
            Delivery(streamSeq: 7, channelID: "general", event: event, slots: [.max, 0, .max]),
        ].map { $0.encoded() } + [
            // slots unpacked (one tag per value): also valid protobuf for a repeated field.
            [0x08, 0x01, 0x12, 0x01, 0x63, 0x20, 0x05, 0x20, 0x06],
        ]
        expectClean(FuzzDriver.run("Delivery", corpus: corpus, generate: ProtoMutator.generate) { bytes in
            decode(bytes, Delivery.init(decoding:)) { delivery in
                // Every slot takes at least one byte on the wire, every event byte one.
                let payload = delivery.event.count + delivery.slots.count
                guard delivery.channelID.utf8.count <= bytes.count * 3 else { return "channel longer than the input" }
                return payload <= bytes.count ? nil : "decoded \(payload) values from \(bytes.count) bytes"
            }
        })
    }

    @Test func typingDecoderNeverTrapsAndRoundTripsWhatItAccepts() {
        let corpus = [
            Typing(channelID: "general", userID: "bob"),
            Typing(channelID: "c", userID: "u", slots: [5, 6, 7, .max]),
        ].map { $0.encoded() }
        expectClean(FuzzDriver.run("Typing", corpus: corpus, generate: ProtoMutator.generate) { bytes in
            decode(bytes, Typing.init(decoding:)) { typing in
                typing.slots.count <= bytes.count ? nil : "\(typing.slots.count) slots from \(bytes.count) bytes"
            }
        })
    }

    @Test func membershipChangeDecoderNeverTrapsAndRoundTripsWhatItAccepts() {
        let corpus = [MembershipChange.State.joined, .left, .channelDeleted].map {
            MembershipChange(channelID: "general", userID: "alice", state: $0, version: 42).encoded()
        } + [MembershipChange(channelID: "c", userID: "_", state: .channelDeleted, version: .max).encoded()]
        expectClean(FuzzDriver.run("MembershipChange", corpus: corpus, generate: ProtoMutator.generate) { bytes in
            decode(bytes, MembershipChange.init(decoding:)) { change in
                change.channelID.utf8.count + change.userID.utf8.count <= bytes.count * 3 ? nil : "strings longer than the input"
            }
        })
    }

    @Test func presenceDeltaDecoderNeverTrapsAndRoundTripsWhatItAccepts() {
        let corpus = [PresenceDelta.State.online, .offline, .instanceDown].map {
            PresenceDelta(instanceID: "notifier-1", epoch: 7, userID: "bob", slot: 12, state: $0).encoded()
        } + [PresenceDelta(instanceID: "n", epoch: .max, userID: "u", slot: .max, state: .online).encoded()]
        expectClean(FuzzDriver.run("PresenceDelta", corpus: corpus, generate: ProtoMutator.generate) { bytes in
            decode(bytes, PresenceDelta.init(decoding:)) { delta in
                delta.instanceID.utf8.count + delta.userID.utf8.count <= bytes.count * 3 ? nil : "strings longer than the input"
            }
        })
    }

    /// A length-delimited field that claims 2^63, 2^32 or 2^31 bytes, with a few bytes behind
    /// it: rejected as malformed at once (protobuf-c checks a length against what is left
    /// before it allocates), for every message and every string/bytes field.
    @Test func lengthFieldsClaimingHugeSizesAreRejectedWithoutAllocatingThem() {
        let decoders: [(String, [UInt8], ([UInt8]) -> ProtoError?)] = [
            ("ChatEvent", [0x0a, 0x12, 0x1a, 0x52, 0x5a], { bytes in catching { () throws(ProtoError) in _ = try ChatEvent(decoding: bytes) } }),
            ("Delivery", [0x12, 0x1a, 0x22], { bytes in catching { () throws(ProtoError) in _ = try Delivery(decoding: bytes) } }),
            ("Typing", [0x0a, 0x12, 0x1a], { bytes in catching { () throws(ProtoError) in _ = try Typing(decoding: bytes) } }),
            ("MembershipChange", [0x0a, 0x12], { bytes in catching { () throws(ProtoError) in _ = try MembershipChange(decoding: bytes) } }),
            ("PresenceDelta", [0x0a, 0x1a], { bytes in catching { () throws(ProtoError) in _ = try PresenceDelta(decoding: bytes) } }),
        ]
        let before = FuzzDriver.residentBytes()
        let started = ContinuousClock.now
        for (name, tags, decode) in decoders {
            for tag in tags {
                for huge in FuzzMutator.hugeVarints {
                    let bytes = [tag] + huge + Array("abc".utf8)
                    #expect(decode(bytes) == .malformed(message: name, byteCount: bytes.count), "\(name) tag \(tag) length \(FuzzDriver.hex(huge))")
                }
            }
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(FuzzDriver.residentBytes() - before < 16 << 20)
    }

    /// protobuf-c's rule for a repeated scalar field: packed and unpacked forms both append.
    /// Many small slots cost one byte each: a 64 KB Delivery can name at most 64 Ki slots.
    @Test func deliverySlotCountIsBoundedByItsSize() throws {
        var bytes: [UInt8] = [0x22, 0x80, 0x80, 0x04]  // slots, packed, 65536 bytes
        bytes += repeatElement(0x01, count: 65_536)
        let delivery = try Delivery(decoding: bytes)
        #expect(delivery.slots.count == 65_536)
        #expect(throws: ProtoError.malformed(message: "Delivery", byteCount: bytes.count - 1)) { try Delivery(decoding: bytes.dropLast()) }
    }

    // MARK: helpers

    /// Decodes `bytes`; on success re-encodes, decodes again and compares, then applies `check`.
    private func decode<T: Equatable>(_ bytes: [UInt8], _ decoder: ([UInt8]) throws(ProtoError) -> T, check: (T) -> String?) -> FuzzOutcome where T: ProtoEncodable {
        let value: T
        do {
            value = try decoder(bytes)
        } catch {
            if case .malformed(_, let count) = error, count != bytes.count { return .violation("error names \(count) bytes, input has \(bytes.count)") }
            return .rejected
        }
        let again: T
        do {
            again = try decoder(value.encoded())
        } catch {
            return .violation("re-encoding an accepted value does not decode: \(error)")
        }
        guard again == value else { return .violation("round trip changed the value: \(value) → \(again)") }
        return check(value).map(FuzzOutcome.violation) ?? .accepted
    }

    private func bodyBytes(_ body: ChatEvent.Body?) -> Int {
        switch body {
        case .messageCreated(let id, let text)?, .messageEdited(let id, let text)?: id.utf8.count + text.utf8.count
        case .messageDeleted(let id)?, .readReceipt(let id)?: id.utf8.count
        case .reaction(let id, let emoji, _)?: id.utf8.count + emoji.utf8.count
        case .channelUpdated(let name, let topic)?: name.utf8.count + topic.utf8.count
        case nil: 0
        }
    }

    private func expectClean(_ result: (report: FuzzReport, failures: [String])) {
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        // The mutator must reach both sides of the decoder, or the run proved nothing.
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
        #expect(result.report.residentGrowthBytes < Self.residentGrowthLimit, "\(result.report)")
    }
}

private func catching(_ body: () throws(ProtoError) -> Void) -> ProtoError? {
    do { try body() } catch { return error }
    return nil
}

/// The messages' shared encoder, so one round-trip helper serves them all.
protocol ProtoEncodable { func encoded() -> [UInt8] }
extension ChatEvent: ProtoEncodable {}
extension Delivery: ProtoEncodable {}
extension Typing: ProtoEncodable {}
extension MembershipChange: ProtoEncodable {}
extension PresenceDelta: ProtoEncodable {}

/// Mutations that know the protobuf wire format: they find a message's top-level fields and
/// break one of them the way a buggy or hostile peer would.
enum ProtoMutator {
    struct Field {
        var range: Range<Int>
        var wireType: UInt8
        /// For a length-delimited field, where its length varint sits.
        var lengthRange: Range<Int>?
        /// For a varint field, where its value sits.
        var valueRange: Range<Int>?
    }

    /// The top-level fields of `bytes`, or nil when they do not parse.
    static func fields(_ bytes: [UInt8]) -> [Field]? {
        var fields: [Field] = []
        var offset = 0
        func varint() -> (UInt64, Range<Int>)? {
            let start = offset
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while offset < bytes.count, shift < 64 {
                let byte = bytes[offset]
                offset += 1
                value |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return (value, start..<offset) }
                shift += 7
            }
            return nil
        }
        while offset < bytes.count {
            let start = offset
            guard let (key, _) = varint() else { return nil }
            let wireType = UInt8(key & 7)
            var field = Field(range: start..<start, wireType: wireType)
            switch wireType {
            case 0:
                guard let (_, range) = varint() else { return nil }
                field.valueRange = range
            case 1: offset += 8
            case 2:
                guard let (length, range) = varint(), length <= UInt64(bytes.count - offset) else { return nil }
                field.lengthRange = range
                offset += Int(length)
            case 5: offset += 4
            default: return nil
            }
            guard offset <= bytes.count else { return nil }
            field.range = start..<offset
            fields.append(field)
        }
        return fields
    }

    /// A corpus entry broken at the field level: a huge length, a duplicated field, an unknown
    /// enum or out-of-range value, a changed wire type, or fields in another order.
    static func generate(_ random: inout FuzzRandom, _ corpus: [[UInt8]]) -> [UInt8] {
        var bytes = corpus[Int(random.next() % UInt64(corpus.count))]
        guard let fields = fields(bytes), !fields.isEmpty else { return FuzzMutator.mutate(bytes, corpus: corpus, using: &random) }
        let field = fields[Int(random.next() % UInt64(fields.count))]
        switch random.next() % 6 {
        case 0 where field.lengthRange != nil:
            let huge = FuzzMutator.hugeVarints[Int(random.next() % UInt64(FuzzMutator.hugeVarints.count))]
            bytes.replaceSubrange(field.lengthRange!, with: huge)
        case 1 where field.lengthRange != nil:  // a length one too long or one too short
            let length = bytes[field.lengthRange!.lowerBound]
            bytes[field.lengthRange!.lowerBound] = random.chance(2) ? length &+ 1 : length &- 1
        case 2:
            bytes.append(contentsOf: bytes[field.range])
        case 3 where field.valueRange != nil:
            var value: [UInt8] = []
            var number = random.chance(2) ? random.next() % 16 : random.next()
            repeat {
                value.append(UInt8(number & 0x7f) | (number > 0x7f ? 0x80 : 0))
                number >>= 7
            } while number > 0
            bytes.replaceSubrange(field.valueRange!, with: value)
        case 4:
            bytes[field.range.lowerBound] = (bytes[field.range.lowerBound] & ~7) | UInt8(random.next() % 8)
        default:
            var shuffled = fields
            shuffled.shuffle(using: &random)
            bytes = shuffled.flatMap { bytes[$0.range] }
        }
        return random.chance(4) ? FuzzMutator.mutate(bytes, corpus: corpus, using: &random) : bytes
    }
}
