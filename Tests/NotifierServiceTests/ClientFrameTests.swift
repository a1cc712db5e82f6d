import Foundation
import SwitchboardProto
import Testing
@testable import NotifierService

@Suite struct ClientFrameTests {
    private func json(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func helloNamesTheInstanceUserHeartbeatAndEpoch() throws {
        let frame = try json(ServerFrame.hello(instance: "n1", user: "alice", heartbeatSeconds: 15, epoch: "1pk3v0i9x2s4"))
        #expect(frame["epoch"] as? String == "1pk3v0i9x2s4")
        #expect(frame["type"] as? String == "hello")
        #expect(frame["instance"] as? String == "n1")
        #expect(frame["user"] as? String == "alice")
        #expect(frame["heartbeat_s"] as? Int == 15)
    }

    @Test func eventFrameRendersEveryBodyKind() throws {
        let bodies: [(ChatEvent.Body?, String, [String: Any])] = [
            (.messageCreated(messageID: "m1", text: "hi"), "message_created", ["message_id": "m1", "text": "hi"]),
            (.messageEdited(messageID: "m1", text: "hey"), "message_edited", ["message_id": "m1", "text": "hey"]),
            (.messageDeleted(messageID: "m1"), "message_deleted", ["message_id": "m1"]),
            (.reaction(messageID: "m1", emoji: "👍", removed: true), "reaction", ["message_id": "m1", "emoji": "👍", "removed": true]),
            (.readReceipt(messageID: "m9"), "read_receipt", ["message_id": "m9"]),
            (.channelUpdated(name: "General", topic: "news"), "channel_updated", ["name": "General", "topic": "news"]),
            (nil, "unknown", [:]),
        ]
        for (body, kind, fields) in bodies {
            let event = ChatEvent(eventID: "e1", channelID: "c1", senderID: "bob", createdAtMs: 1_700_000_000_123, body: body)
            let frame = try json(ServerFrame.event(channel: "c1", seq: 18_446_744_073_709_551_615, prev: 17, epoch: "e-1", event: event))
            #expect(frame["type"] as? String == "event")
            #expect(frame["prev"] as? Int == 17)
            #expect(frame["epoch"] as? String == "e-1")
            #expect(frame["channel"] as? String == "c1")
            #expect((frame["seq"] as? NSNumber)?.uint64Value == UInt64.max)
            let rendered = try #require(frame["event"] as? [String: Any])
            #expect(rendered["id"] as? String == "e1")
            #expect(rendered["sender"] as? String == "bob")
            #expect((rendered["created_at_ms"] as? NSNumber)?.int64Value == 1_700_000_000_123)
            #expect(rendered["kind"] as? String == kind)
            for (key, value) in fields {
                switch value {
                case let text as String: #expect(rendered[key] as? String == text, "\(kind).\(key)")
                case let flag as Bool: #expect(rendered[key] as? Bool == flag, "\(kind).\(key)")
                default: Issue.record("unexpected fixture value")
                }
            }
        }
    }

    @Test func stringsAreEscapedIntoValidJSON() throws {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{07} nul \u{0} emoji 🎉"
        let event = ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: -5, body: .messageCreated(messageID: "m", text: nasty))
        let frame = try json(ServerFrame.event(channel: "c", seq: 1, prev: 0, epoch: "e", event: event))
        let rendered = try #require(frame["event"] as? [String: Any])
        #expect(rendered["text"] as? String == nasty)
        #expect(rendered["created_at_ms"] as? Int == -5)
    }

    @Test func typingPongAndErrorFrames() throws {
        #expect(String(decoding: ServerFrame.typing(channel: "c", user: "u"), as: UTF8.self) == #"{"type":"typing","channel":"c","user":"u"}"#)
        #expect(try json(ServerFrame.pong)["type"] as? String == "pong")
        let error = try json(ServerFrame.error(code: "bad_frame", message: "no \"type\""))
        #expect(error["code"] as? String == "bad_frame")
        #expect(error["message"] as? String == "no \"type\"")
    }

    @Test func connectResumeParsesChannelSeqPairsAndRejectsTheRest() throws {
        #expect(try ConnectResume.parse(uri: "/ws?token=t") == nil)
        let parsed = try #require(try ConnectResume.parse(uri: "/ws?token=t&resume=general:42,room-b:0"))
        #expect(parsed.positions == [.init(channel: "general", afterSeq: 42), .init(channel: "room-b", afterSeq: 0)])
        #expect(try ConnectResume.parse(uri: "/ws?resume=general%3A7")?.positions == [.init(channel: "general", afterSeq: 7)])
        for bad in ["general", "general:", "general:-1", "a.b:1", "general:1,general:2", "general:1,", ":5"] {
            #expect(throws: ClientFrame.Rejection.self, "\(bad)") { try ConnectResume.parse(uri: "/ws?resume=\(bad)") }
        }
        #expect(parsed.epoch == nil)
        #expect(try ConnectResume.parse(uri: "/ws?token=t&resume=general:42&epoch=1pk3v0i9x2s4")?.epoch == "1pk3v0i9x2s4")
        for bad in ["", "has.dot", "sp%20ace", String(repeating: "a", count: 65)] {
            #expect(throws: ClientFrame.Rejection.self, "\(bad)") { try ConnectResume.parse(uri: "/ws?resume=general:1&epoch=\(bad)") }
        }
    }

    @Test func clientFramesDecode() throws {
        #expect(try ClientFrame.decode(Array(#"{"type":"ping"}"#.utf8)) == .ping)
        #expect(try ClientFrame.decode(Array(#"{"type":"typing","channel":"general","extra":1}"#.utf8)) == .typing(channel: "general"))
        #expect(try ClientFrame.decode(Array(#"{"type":"resume","channel":"general","after_seq":42}"#.utf8)) == .resume(channel: "general", afterSeq: 42, epoch: nil))
        #expect(try ClientFrame.decode(Array(#"{"type":"resume","channel":"general","after_seq":42,"epoch":"abc_-9"}"#.utf8)) == .resume(channel: "general", afterSeq: 42, epoch: "abc_-9"))
        #expect(String(decoding: ServerFrame.resumed(channel: "c", seq: 9, replayed: 2, complete: false, epoch: "e1"), as: UTF8.self) == #"{"type":"resumed","channel":"c","seq":9,"replayed":2,"complete":false,"epoch":"e1"}"#)
        #expect(String(decoding: ServerFrame.resumed(channel: "c", seq: 0, replayed: 0, complete: false, epoch: "e2", reason: "epoch_changed"), as: UTF8.self) == #"{"type":"resumed","channel":"c","seq":0,"replayed":0,"complete":false,"epoch":"e2","reason":"epoch_changed"}"#)
    }

    @Test(arguments: [
        ("", "bad_frame"),
        ("not json", "bad_frame"),
        ("[1,2]", "bad_frame"),
        (#"{"kind":"ping"}"#, "bad_frame"),
        (#"{"type":7}"#, "bad_frame"),
        (#"{"type":"typing"}"#, "bad_frame"),
        (#"{"type":"typing","channel":"no spaces"}"#, "invalid_channel"),
        (#"{"type":"typing","channel":""}"#, "invalid_channel"),
        (#"{"type":"subscribe","channel":"c"}"#, "unknown_type"),
        (#"{"type":"resume","channel":"c"}"#, "bad_frame"),
        (#"{"type":"resume","channel":"c","after_seq":-1}"#, "bad_frame"),
        (#"{"type":"resume","channel":"c d","after_seq":1}"#, "invalid_channel"),
        (#"{"type":"resume","channel":"c","after_seq":1,"epoch":"no.dots"}"#, "bad_resume"),
        (#"{"type":"resume","channel":"c","after_seq":1,"epoch":""}"#, "bad_resume"),
    ])
    func malformedClientFramesAreRejectedNotFatal(input: String, code: String) {
        #expect(throws: ClientFrame.Rejection.self) { try ClientFrame.decode(Array(input.utf8)) }
        do {
            _ = try ClientFrame.decode(Array(input.utf8))
        } catch {
            #expect(error.code == code)
        }
    }

    @Test func invalidUTF8IsRejected() {
        #expect(throws: ClientFrame.Rejection.self) { try ClientFrame.decode([0x7B, 0xFF, 0xFE, 0x7D]) }
    }
}
