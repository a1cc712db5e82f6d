import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing
@testable import NotifierService

/// The event size limits agree end to end: every event `CHAT_EVENTS` accepts renders to a
/// frame that fits one socket's outbound budget, and a larger one is refused at publish.
@Suite(.serialized) struct EventSizeLimitTests {
    /// A message-created event of exactly `size` encoded bytes whose text is `filler`
    /// repeated (a control character is the worst case: six bytes of JSON each), padded with
    /// ASCII to the exact size.
    static func event(encodedSize size: Int, filler: Character = "\u{01}", seq: Int = 1) -> ChatEvent {
        func event(fillers: Int, padding: Int) -> ChatEvent {
            ChatEvent(
                eventID: "e\(seq)", channelID: "general", senderID: "bob", createdAtMs: 1_700_000_000_000,
                body: .messageCreated(messageID: "m\(seq)", text: String(repeating: filler, count: fillers) + String(repeating: "x", count: padding))
            )
        }
        let fillerBytes = String(filler).utf8.count
        var fillers = size / fillerBytes
        while event(fillers: fillers, padding: 0).encoded().count > size { fillers -= 1 }
        var padding = 0
        while true {
            let candidate = event(fillers: fillers, padding: padding)
            let count = candidate.encoded().count
            if count == size { return candidate }
            if count > size {
                fillers -= 1
                padding = 0
            } else {
                padding += size - count
            }
        }
    }

    @Test func streamDefinitionAcceptsExactlyTheEventsTheNotifierIsSizedFor() throws {
        let definition = try Data(contentsOf: URL(fileURLWithPath: RepositoryPaths.streams).appendingPathComponent("\(StreamNames.events).json"))
        let json = try #require(try JSONSerialization.jsonObject(with: definition) as? [String: Any])
        #expect(json["max_msg_size"] as? Int == ServerFrame.maxEventBytes)
        #expect(NotifierConfiguration(instanceID: "n1", jwtSecret: []).outboundBufferBytes >= ServerFrame.maxEventFrameBytes())
    }

    @Test func worstCaseEventAtTheLimitRendersWithinTheBound() {
        for filler: Character in ["\u{01}", "\"", "x", "é"] {
            let event = Self.event(encodedSize: ServerFrame.maxEventBytes, filler: filler)
            let frame = ServerFrame.event(channel: String(repeating: "c", count: 64), seq: .max, prev: .max, epoch: String(repeating: "e", count: StreamEpoch.maxLength), event: event)
            #expect(frame.count <= ServerFrame.maxEventFrameBytes(), "filler \(filler.unicodeScalars.first!.value)")
        }
        // Control characters come close to the bound: it is not loose by more than the envelope.
        let worst = ServerFrame.event(channel: "general", seq: 1, prev: 0, epoch: "e", event: Self.event(encodedSize: ServerFrame.maxEventBytes))
        #expect(worst.count > ServerFrame.maxEventFrameBytes() - 2 * ServerFrame.eventFrameEnvelopeBytes)
    }

    @Test func envelopeOfEveryBodyKindFitsItsAllowance() {
        let bodies: [ChatEvent.Body?] = [
            .messageCreated(messageID: "", text: ""), .messageEdited(messageID: "", text: ""), .messageDeleted(messageID: ""),
            .reaction(messageID: "", emoji: "", removed: false), .readReceipt(messageID: ""), .channelUpdated(name: "", topic: ""), nil,
        ]
        for body in bodies {
            let event = ChatEvent(eventID: "", channelID: "", senderID: "", createdAtMs: .min, body: body)
            let frame = ServerFrame.event(channel: String(repeating: "c", count: 64), seq: .max, prev: .max, epoch: String(repeating: "e", count: StreamEpoch.maxLength), event: event)
            #expect(frame.count <= ServerFrame.eventFrameEnvelopeBytes)
        }
    }

    @Test func budgetBelowTheLargestEventFrameIsRefused() {
        var configuration = NotifierConfiguration(instanceID: "n1", jwtSecret: Array(NotifierFixture.secret.utf8))
        configuration.outboundBufferBytes = ServerFrame.maxEventFrameBytes() - 1
        #expect(configuration.problem()?.contains("--outbound-buffer-bytes must be at least \(ServerFrame.maxEventFrameBytes())") == true)
        configuration.outboundBufferBytes = ServerFrame.maxEventFrameBytes()
        #expect(configuration.problem() == nil)
    }

    @Test func eventAtTheStreamLimitReachesTheClientAndOneOverItIsRefusedAtPublish() async throws {
        let fixture = try await NotifierFixture()
        defer { fixture.stop() }
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        let jetStream = try fixture.chatStreams(over: nats)
        try fixture.publishMembership("general", "alice", over: jetStream)
        let atLimit = Self.event(encodedSize: ServerFrame.maxEventBytes).encoded()
        let ack = try jetStream.publish(Subjects.event(channel: "general", partitionCount: 16), payload: atLimit)
        // One byte more is refused by JetStream: the edge never stores what a client cannot be sent.
        let overLimit = Self.event(encodedSize: ServerFrame.maxEventBytes + 1, seq: 2).encoded()
        #expect(throws: (any Error).self) { try jetStream.publish(Subjects.event(channel: "general", partitionCount: 16), payload: overLimit) }

        // Replayed on resume (the path that re-sent the same event on every reconnect) ...
        let client = try WebSocketTestClient(port: fixture.port, path: "/ws?resume=general:0", headers: ["Authorization": "Bearer \(try await fixture.token("alice"))"])
        #expect(try client.receiveText()?.contains(#""type":"hello""#) == true)
        let replayed = try #require(try client.receiveText(timeout: .seconds(10)))
        #expect(replayed.hasPrefix(#"{"type":"event","channel":"general","seq":\#(ack.sequence)"#))
        #expect(replayed.utf8.count > 5 * ServerFrame.maxEventBytes)
        #expect(try client.receiveText(timeout: .seconds(10))?.contains(#""type":"resumed""#) == true)
        // ... and delivered live, as the fan-out sends it.
        let slot = try #require(try fixture.slot(of: "alice"))
        var headers = NATSHeaders()
        headers[InboxKind.header] = InboxKind.delivery
        let delivery = Delivery(streamSeq: ack.sequence + 10, channelID: "general", event: atLimit, slots: [slot])
        try nats.publish(Subjects.inbox(instance: fixture.instanceID), payload: Deliveries(epoch: "", deliveries: [delivery]).encoded(), headers: headers)
        try nats.flush(timeout: .seconds(2))
        let live = try #require(try client.receiveText(timeout: .seconds(10)))
        #expect(live.utf8.count == replayed.utf8.count + String(ack.sequence + 10).count - String(ack.sequence).count)
        // Still open: no 4008.
        try client.send(text: #"{"type":"ping"}"#)
        #expect(try client.receiveText() == #"{"type":"pong"}"#)
        #expect((fixture.metric(#"switchboard_notifier_closes_total{reason="slow_consumer"}"#) ?? 0) == 0)
    }

    @Test func singleFrameLargerThanTheBudgetIsSentToAnIdleSocket() async throws {
        let fixture = try await NotifierFixture(arguments: ["--outbound-buffer-bytes", "\(ServerFrame.maxEventFrameBytes())"])
        defer { fixture.stop() }
        let client = try fixture.connect(try await fixture.token("olga"))
        let slot = try #require(try fixture.slot(of: "olga"))
        let nats = try fixture.natsConnection()
        defer { nats.close() }
        // Only the inbox can carry an event this large (it never passed CHAT_EVENTS).
        try fixture.deliver(seq: 1, text: String(repeating: "w", count: ServerFrame.maxEventFrameBytes() + 4096), slots: [slot], over: nats)
        let frame = try #require(try client.receiveText(timeout: .seconds(10)))
        #expect(frame.utf8.count > ServerFrame.maxEventFrameBytes())
        try client.send(text: #"{"type":"ping"}"#)
        #expect(try client.receiveText() == #"{"type":"pong"}"#)
        #expect((fixture.metric(#"switchboard_notifier_closes_total{reason="slow_consumer"}"#) ?? 0) == 0)
    }
}
