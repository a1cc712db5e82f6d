@testable import NATSClient
import PropertyBased
import Testing

@Suite struct ServerFrameTests {
    /// A frame as text, the way a test states what it expects.
    enum Expected: Equatable {
        case message(subject: String, sid: UInt64, reply: String?, headers: String?, payload: String)
        case ping, pong, ok
        case info(String)
        case error(String)

        var wire: String {
            switch self {
            case .message(let subject, let sid, let reply, let headers, let payload):
                let replyPart = reply.map { " \($0)" } ?? ""
                if let headers { return "HMSG \(subject) \(sid)\(replyPart) \(headers.utf8.count) \(headers.utf8.count + payload.utf8.count)\r\n\(headers)\(payload)\r\n" }
                return "MSG \(subject) \(sid)\(replyPart) \(payload.utf8.count)\r\n\(payload)\r\n"
            case .ping: return "PING\r\n"
            case .pong: return "PONG\r\n"
            case .ok: return "+OK\r\n"
            case .info(let json): return "INFO \(json)\r\n"
            case .error(let text): return "-ERR \(text)\r\n"
            }
        }
    }

    static func text(_ bytes: [UInt8], _ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    static func expected(_ frame: ServerFrame, in bytes: [UInt8]) -> Expected {
        switch frame {
        case .message(let message):
            return .message(subject: text(bytes, message.subject), sid: message.sid, reply: message.reply.map { text(bytes, $0) },
                            headers: message.headers.map { text(bytes, $0) }, payload: text(bytes, message.payload))
        case .ping: return .ping
        case .pong: return .pong
        case .ok: return .ok
        case .info(let range): return .info(text(bytes, range))
        case .error(let range): return .error(text(bytes, range))
        }
    }

    /// Parses `bytes` as a receiver would: the bytes arrive in pieces cut at `cuts`, and
    /// parsing resumes from the first unparsed byte after each.
    static func parse(_ bytes: [UInt8], arrivingIn cuts: [Int]) throws -> [Expected] {
        var frames: [Expected] = []
        var start = 0
        for end in (cuts.filter { $0 > 0 && $0 < bytes.count }.sorted() + [bytes.count]) {
            let received = Array(bytes[0..<end])
            try received.withUnsafeBufferPointer { buffer in
                while let (frame, next) = try ServerFrame.next(in: buffer, from: start) {
                    frames.append(expected(frame, in: received))
                    start = next
                }
            }
        }
        #expect(start == bytes.count, "bytes left unparsed")
        return frames
    }

    @Test func readsEachOperationTheServerSends() throws {
        let frames: [Expected] = [
            .info(#"{"server_id":"X","headers":true}"#),
            .message(subject: "chat.membership.3.c.u", sid: 1, reply: "$JS.ACK.S.C.1.2.3.4.5", headers: nil, payload: "abc"),
            .message(subject: "a", sid: 22, reply: nil, headers: nil, payload: ""),
            .message(subject: "_INBOX.x.scan", sid: 1, reply: "$JS.FC.S.C.1", headers: "NATS/1.0 100 FlowControl Request\r\n\r\n", payload: ""),
            .message(subject: "s", sid: 3, reply: nil, headers: "NATS/1.0\r\nNats-Msg-Id: 7\r\n\r\n", payload: "with\r\nCRLF inside"),
            .ping, .pong, .ok, .error("'Authorization Violation'"),
        ]
        let wire = Array(frames.map(\.wire).joined().utf8)
        #expect(try Self.parse(wire, arrivingIn: []) == frames)
        // Lower case and tabs between arguments are the same protocol.
        #expect(try Self.parse(Array("msg\ta\t9\t2\r\nhi\r\nping\r\n".utf8), arrivingIn: []) == [.message(subject: "a", sid: 9, reply: nil, headers: nil, payload: "hi"), .ping])
    }

    @Test func anyCutOfTheBytesGivesTheSameFrames() async {
        let pieces: [Expected] = [
            .message(subject: "chat.membership.15.channel-9.user-1", sid: 1, reply: "$JS.ACK.CHAT_MEMBERSHIP.c.1.19.19.1764000000123456789.0", headers: nil, payload: "\u{8}\u{1}\u{12}\u{4}abcd"),
            .message(subject: "x", sid: 1, reply: "$JS.FC.CHAT_MEMBERSHIP.c.7", headers: "NATS/1.0 100 FlowControl Request\r\n\r\n", payload: ""),
            .message(subject: "x", sid: 1, reply: nil, headers: "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\nNats-Last-Stream: 9\r\n\r\n", payload: ""),
            .message(subject: "y", sid: 12, reply: nil, headers: nil, payload: String(repeating: "z", count: 300)),
            .ping, .pong, .ok, .info(#"{"max_payload":1048576}"#), .error("'Stale Connection'"),
        ]
        await propertyCheck(count: 500, input: Gen.int(in: 0...pieces.count - 1).array(of: 1...12), Gen.int(in: 0...2_000).array(of: 0...8)) { choices, cuts in
            let frames = choices.map { pieces[$0] }
            let wire = Array(frames.map(\.wire).joined().utf8)
            #expect((try? Self.parse(wire, arrivingIn: cuts)) == frames)
        }
    }

    @Test func refusesMalformedLines() {
        for line in [
            "MSG a 1\r\n", "MSG a x 1\r\nh\r\n", "MSG a 1 b c 1\r\nh\r\n", "MSG a 1 2\r\nhello\r\n",
            "HMSG a 1 5 3\r\nNATS/1.0\r\n\r\n", "HMSG a 1 x 3\r\n", "PINGX\r\n", "HELLO\r\n", "PING\rX",
        ] {
            let bytes = Array(line.utf8)
            #expect(throws: ServerFrame.ParseError.self, "\(line.debugDescription)") {
                _ = try bytes.withUnsafeBufferPointer { try ServerFrame.next(in: $0, from: 0) }
            }
        }
        let endless = [UInt8](repeating: UInt8(ascii: "a"), count: ServerFrame.maxControlLine + 1)
        #expect(throws: ServerFrame.ParseError.lineTooLong) { _ = try endless.withUnsafeBufferPointer { try ServerFrame.next(in: $0, from: 0) } }
    }

    @Test func readsTheStatusAndHeadersOfAHeaderBlock() {
        func status(_ block: String) -> Int? { Array(block.utf8).withUnsafeBufferPointer { HeaderBlock.status($0) } }
        func value(_ name: String, _ block: String) -> String? { Array(block.utf8).withUnsafeBufferPointer { HeaderBlock.value(name, in: $0) } }
        #expect(status("NATS/1.0 100 FlowControl Request\r\n\r\n") == 100)
        #expect(status("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\n\r\n") == 100)
        #expect(status("NATS/1.0 408 Request Timeout\r\n\r\n") == 408)
        #expect(status("NATS/1.0\r\nNats-Msg-Id: 7\r\n\r\n") == nil)
        #expect(status("NATS/1.0 10\r\n\r\n") == nil)
        let heartbeat = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\nnats-consumer-stalled:  $JS.FC.S.C.9 \r\n\r\n"
        #expect(value("Nats-Last-Consumer", heartbeat) == "4")
        #expect(value("Nats-Consumer-Stalled", heartbeat) == "$JS.FC.S.C.9")
        #expect(value("Nats-Last-Stream", heartbeat) == nil)
    }
}
