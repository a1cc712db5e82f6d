import Testing
@testable import SwitchboardProto

@Suite struct ChatEventCoding {
    static let bodies: [ChatEvent.Body?] = [
        nil,
        .messageCreated(messageID: "m1", text: "héllo ✨"),
        .messageEdited(messageID: "m1", text: ""),
        .messageDeleted(messageID: "m2"),
        .reaction(messageID: "m3", emoji: "👍", removed: true),
        .readReceipt(messageID: "m4"),
        .channelUpdated(name: "general", topic: "news"),
    ]

    @Test(arguments: bodies)
    func everyBodyKindSurvivesARoundTrip(body: ChatEvent.Body?) throws {
        let event = ChatEvent(eventID: "e-1", channelID: "general", senderID: "alice", createdAtMs: 1_700_000_000_123, skipSenderEcho: true, body: body)
        #expect(try ChatEvent(decoding: event.encoded()) == event)
    }

    @Test func aFieldCutShortIsAMalformedErrorNotACrash() throws {
        let bytes = ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: 1, body: .messageCreated(messageID: "m", text: "hello")).encoded()
        // Cuts at a field boundary are valid protobuf (a prefix of the fields); these are not:
        // a lone tag, a length without its bytes, and the body sub-message missing its end.
        for cut in [1, 2, bytes.count - 1] {
            #expect(throws: ProtoError.malformed(message: "ChatEvent", byteCount: cut)) { try ChatEvent(decoding: bytes[..<cut]) }
        }
    }

    @Test func randomGarbageNeverCrashesTheDecoders() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? ChatEvent(decoding: bytes)
            _ = try? Delivery(decoding: bytes)
            _ = try? Deliveries(decoding: bytes).deliveries
            _ = try? MembershipChange(decoding: bytes)
            _ = try? PresenceDelta(decoding: bytes)
            _ = try? Typing(decoding: bytes)
        }
    }
}

@Suite struct RoutingMessageCoding {
    @Test func membershipChangeRoundTripsEveryState() throws {
        for state in [MembershipChange.State.joined, .left, .channelDeleted] {
            let change = MembershipChange(channelID: "c-1", userID: "u_2", state: state, version: 42)
            #expect(try MembershipChange(decoding: change.encoded()) == change)
        }
    }

    @Test func unknownMembershipStateIsATypedError() {
        // field 3 (state), varint 9: a value this build does not know.
        let bytes: [UInt8] = [0x0a, 0x01, 0x63, 0x12, 0x01, 0x75, 0x18, 0x09]
        #expect(throws: ProtoError.unknownEnumValue(message: "MembershipChange", field: "state", value: 9)) {
            try MembershipChange(decoding: bytes)
        }
    }

    @Test func unspecifiedPresenceStateIsRejected() {
        #expect(throws: ProtoError.self) { try PresenceDelta(decoding: [0x0a, 0x01, 0x69]) }
    }

    @Test func presenceDeltaRoundTrips() throws {
        let delta = PresenceDelta(instanceID: "n-1", epoch: 7, userID: "bob", slot: 12, state: .offline)
        #expect(try PresenceDelta(decoding: delta.encoded()) == delta)
    }

    @Test func deliveryHasTheProtobufWireLayout() throws {
        let delivery = Delivery(streamSeq: 1, channelID: "c", event: [0x01], slots: [1, 300])
        // stream_seq=1, channel_id="c", event=0x01, slots packed [1, 300].
        #expect(delivery.encoded() == [0x08, 0x01, 0x12, 0x01, 0x63, 0x1a, 0x01, 0x01, 0x22, 0x03, 0x01, 0xac, 0x02])
        #expect(try Delivery(decoding: delivery.encoded()) == delivery)
    }

    @Test func deliveryFastPathMatchesTheValueEncoder() throws {
        let event = ChatEvent(eventID: "e", channelID: "room", senderID: "s", createdAtMs: 3, body: .readReceipt(messageID: "m")).encoded()
        let slots: [UInt32] = Array(0..<1000)
        let fast = event.withUnsafeBytes { e in slots.withUnsafeBufferPointer { Delivery.encode(streamSeq: 99, channelID: "room", event: e, slots: $0) } }
        #expect(fast == Delivery(streamSeq: 99, channelID: "room", event: event, slots: slots).encoded())
        let decoded = try Delivery(decoding: fast)
        #expect(try ChatEvent(decoding: decoded.event).channelID == "room")
    }

    @Test func deliveriesBuiltByAppendingAreTheProtobufMessageOfTheirDeliveries() throws {
        let small = Delivery(streamSeq: 1, channelID: "c", event: [0x01], slots: [1, 300])
        // Over 127 bytes: its length takes a two-byte varint.
        let large = Delivery(streamSeq: 2, channelID: "room", event: Array(repeating: 0x41, count: 300), slots: Array(0..<50))
        let bytes = Deliveries(epoch: "", deliveries: [small, large, small]).encoded()
        #expect(Array(bytes.prefix(2)) == [0x0A, UInt8(small.encoded().count)])
        #expect(try Deliveries(decoding: bytes).deliveries == [small, large, small])
        #expect(try Deliveries(decoding: []).deliveries == [])
        let stamped = Deliveries(epoch: "1pk3v0i9x2s4", deliveries: [Delivery(streamSeq: 9, channelID: "c", event: [1], slots: [2], prevSeq: 7), small])
        #expect(try Deliveries(decoding: stamped.encoded()) == stamped)
        #expect(throws: ProtoError.self) { try Deliveries(decoding: Array(bytes.dropLast())) }
    }

    @Test func emptyDeliveryRoundTrips() throws {
        let delivery = Delivery(streamSeq: 0, channelID: "", event: [], slots: [])
        #expect(try Delivery(decoding: delivery.encoded()) == delivery)
    }

    @Test func typingRoundTripsWithAndWithoutSlots() throws {
        for slots in [[], [5, 6, 7] as [UInt32]] {
            let typing = Typing(channelID: "c", userID: "u", slots: slots)
            #expect(try Typing(decoding: typing.encoded()) == typing)
        }
    }
}
