import Foundation
import SwitchboardContracts
import SwitchboardProto

// The JSON text frames of the client protocol (DESIGN: Notifier).
//
// server → client
//   {"type":"hello","instance":"n1","user":"u1","heartbeat_s":15,"epoch":"1pk3v0i9x2s4"}
//   {"type":"event","channel":"c","seq":42,"prev":40,"epoch":"1pk3v0i9x2s4","event":{"id":…,"sender":…,"created_at_ms":…,"kind":…,…}}
//   {"type":"position","channel":"c","seq":43,"prev":42,"epoch":"1pk3v0i9x2s4"}   (own event, echo skipped)
//   {"type":"typing","channel":"c","user":"u2"}
//   {"type":"pong"}
//   {"type":"resumed","channel":"c","seq":57,"replayed":15,"complete":true,"epoch":"1pk3v0i9x2s4"}
//   {"type":"resumed","channel":"c","seq":0,"replayed":0,"complete":false,"epoch":"…","reason":"epoch_changed"}
//   {"type":"error","code":"bad_frame","message":"…"}
// client → server
//   {"type":"typing","channel":"c"}
//   {"type":"ping"}
//   {"type":"resume","channel":"c","after_seq":42,"epoch":"1pk3v0i9x2s4"}   (epoch optional)
//
// Positions: `seq` is the event's CHAT_EVENTS sequence, `prev` the sequence of the previous
// event of the same channel (0: none), `epoch` names the stream's sequence space (it changes
// when CHAT_EVENTS is created anew and numbering starts again). A client holding seq S of a
// channel that gets an event with prev ≠ S has missed something and resumes that channel.
// A resume naming another epoch than the current one replays nothing: `resumed` says
// `complete:false`, `reason:"epoch_changed"`, and the client refetches history.
//
// Resume (after a reconnect): the client names, per channel, the last `seq` it has. The
// server checks the user is a member (CHAT_MEMBERSHIP), replays the channel's later events
// from CHAT_EVENTS as ordinary event frames, then sends `resumed` with the last replayed
// seq. Live events of that channel arriving meanwhile are held back and sent after
// `resumed`, without the ones the replay already carried, so the client sees each seq once
// and in order. `complete:false` means the replay was capped or the stream no longer has
// the oldest events: the client must fetch history elsewhere.
//
// Close codes the server uses (RFC 6455 ones plus the application range):
//   1003 binary frames are not part of the protocol
//   1008 policy: inbound message rate over the per-socket limit
//   1009 a frame or message over the size limit
//   4000 "reconnect": the instance is draining; connect again (to another instance)
//   4001 "heartbeat timeout": nothing heard for two heartbeat intervals
//   4008 "slow consumer": the socket's outbound buffer went over its bound; the client
//        should reconnect and resync (it missed frames)

/// Encodes the server's frames. Event frames are built once per delivery and the same
/// bytes go to every recipient socket, so the encoder writes straight into a byte array
/// with no intermediate `Codable` tree.
public enum ServerFrame {
    /// Largest `ChatEvent` the `CHAT_EVENTS` stream accepts: its `max_msg_size` in
    /// `streams/CHAT_EVENTS.json` (payload and headers together, so a payload is never larger).
    public static let maxEventBytes = 32_768

    /// Bytes of an event frame that do not come from the event's text: the envelope, the keys,
    /// an identifier channel (≤ 64 bytes), a 20-digit seq and timestamp. The longest body
    /// (`reaction`) renders to well under half of it with every string empty.
    public static let eventFrameEnvelopeBytes = 512

    /// The largest event frame an event of `eventBytes` can render to. Every string of the
    /// event (ids, text, emoji, name, topic) is a distinct run of the encoded event's bytes,
    /// and one byte renders to at most six (`\u0001`; an invalid UTF-8 byte becomes the
    /// three-byte U+FFFD), so the frame is at most six times the event plus the envelope.
    public static func maxEventFrameBytes(eventBytes: Int = maxEventBytes) -> Int {
        6 * eventBytes + eventFrameEnvelopeBytes
    }

    /// A frame `{"type":"<type>",…}`, its other fields written by `fields`.
    private static func frame(_ type: String, capacity: Int = 64, _ fields: (inout JSONWriter) -> Void) -> [UInt8] {
        var json = JSONWriter(capacity: capacity)
        json.open()
        json.field("type", type)
        fields(&json)
        json.close()
        return json.bytes
    }

    public static func hello(instance: String, user: String, heartbeatSeconds: Int, epoch: String) -> [UInt8] {
        frame(FrameType.hello) { json in
            json.field("instance", instance)
            json.field("user", user)
            json.field("heartbeat_s", Int64(heartbeatSeconds))
            json.field("epoch", epoch)
        }
    }

    /// The frame for one delivered event. `event` is rendered field by field; the `kind`
    /// field names the body (`message_created`, `reaction`, …, or `unknown`).
    public static func event(channel: String, seq: UInt64, prev: UInt64, epoch: String, event: ChatEvent) -> [UInt8] {
        frame(FrameType.event, capacity: 192 + channel.utf8.count + epoch.utf8.count + event.renderedStringBytes) { json in
            json.field("channel", channel)
            json.field("seq", seq)
            json.field("prev", prev)
            json.field("epoch", epoch)
            json.key("event")
            json.open()
            json.field("id", event.eventID)
            json.field("sender", event.senderID)
            json.field("created_at_ms", event.createdAtMs)
            switch event.body {
            case .messageCreated(let messageID, let text)?:
                json.field("kind", "message_created")
                json.field("message_id", messageID)
                json.field("text", text)
            case .messageEdited(let messageID, let text)?:
                json.field("kind", "message_edited")
                json.field("message_id", messageID)
                json.field("text", text)
            case .messageDeleted(let messageID)?:
                json.field("kind", "message_deleted")
                json.field("message_id", messageID)
            case .reaction(let messageID, let emoji, let removed)?:
                json.field("kind", "reaction")
                json.field("message_id", messageID)
                json.field("emoji", emoji)
                json.field("removed", removed)
            case .readReceipt(let messageID)?:
                json.field("kind", "read_receipt")
                json.field("message_id", messageID)
            case .channelUpdated(let name, let topic)?:
                json.field("kind", "channel_updated")
                json.field("name", name)
                json.field("topic", topic)
            case nil:
                json.field("kind", "unknown")
            }
            json.close()
        }
    }

    /// The position of an event a socket does not get (its own, sent without echo), so that
    /// the socket's chain of the channel stays whole.
    public static func position(channel: String, seq: UInt64, prev: UInt64, epoch: String) -> [UInt8] {
        frame(FrameType.position, capacity: 96) { json in
            json.field("channel", channel)
            json.field("seq", seq)
            json.field("prev", prev)
            json.field("epoch", epoch)
        }
    }

    public static func typing(channel: String, user: String) -> [UInt8] {
        frame(FrameType.typing) { json in
            json.field("channel", channel)
            json.field("user", user)
        }
    }

    public static let pong: [UInt8] = Array(#"{"type":"\#(FrameType.pong)"}"#.utf8)

    /// `reason` says why a resume is not complete when the client must do more than fetch
    /// older history (`epoch_changed`).
    public static func resumed(channel: String, seq: UInt64, replayed: Int, complete: Bool, epoch: String, reason: String? = nil) -> [UInt8] {
        frame(FrameType.resumed) { json in
            json.field("channel", channel)
            json.field("seq", seq)
            json.field("replayed", Int64(replayed))
            json.field("complete", complete)
            json.field("epoch", epoch)
            if let reason { json.field("reason", reason) }
        }
    }

    /// `channel`: the channel a refused request named (a resume), so that the client knows
    /// which one to retry.
    public static func error(code: String, message: String, channel: String? = nil) -> [UInt8] {
        frame(FrameType.error) { json in
            json.field("code", code)
            json.field("message", message)
            if let channel { json.field("channel", channel) }
        }
    }
}

/// The `resume` query parameter of an upgrade request, `?resume=general:42,random:7`: the
/// channels to replay from the first instant of the socket. Resuming in the URL rather than
/// with `resume` frames closes a race: a live event can reach a new socket before its first
/// frame is read, and would then come again, out of order, in the replay.
public struct ConnectResume: Equatable, Sendable {
    public struct Position: Equatable, Sendable {
        public var channel: String
        public var afterSeq: UInt64
    }

    public var positions: [Position]
    /// The epoch the positions belong to (`&epoch=`); nil when the client did not say.
    public var epoch: String?

    /// Nil when the URI has no `resume`; a `Rejection` when it is malformed.
    public static func parse(uri: String) throws(ClientFrame.Rejection) -> ConnectResume? {
        guard let query = uri.firstIndex(of: "?").map({ uri[uri.index(after: $0)...] }) else { return nil }
        var epoch: String?
        if let pair = query.split(separator: "&").first(where: { $0.hasPrefix("epoch=") }) {
            let value = String(pair.dropFirst("epoch=".count)).removingPercentEncoding ?? ""
            guard StreamEpoch.isValid(value) else {
                throw ClientFrame.Rejection(code: FrameErrorCode.badResume, message: "epoch must be 1 to \(StreamEpoch.maxLength) characters of A-Z, a-z, 0-9, '_' and '-'")
            }
            epoch = value
        }
        guard let pair = query.split(separator: "&").first(where: { $0.hasPrefix("resume=") }) else { return nil }
        let value = String(pair.dropFirst("resume=".count)).removingPercentEncoding ?? ""
        var positions: [Position] = []
        for item in value.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, Identifier.isValid(String(parts[0])), let seq = UInt64(parts[1]) else {
                throw ClientFrame.Rejection(code: FrameErrorCode.badResume, message: "resume must be channel:seq pairs separated by commas")
            }
            guard !positions.contains(where: { $0.channel == parts[0] }) else {
                throw ClientFrame.Rejection(code: FrameErrorCode.badResume, message: "channel '\(parts[0])' is named twice in resume")
            }
            positions.append(Position(channel: String(parts[0]), afterSeq: seq))
        }
        return ConnectResume(positions: positions, epoch: epoch)
    }
}

/// A frame a client sent, validated.
public enum ClientFrame: Equatable, Sendable {
    case ping
    case typing(channel: String)
    /// Replay `channel`'s events after `afterSeq` (a `seq` of an event frame), numbered in
    /// `epoch` when the client names it.
    case resume(channel: String, afterSeq: UInt64, epoch: String?)

    /// Why a text frame was rejected; `code` goes into the error frame.
    public struct Rejection: Error, Equatable, Sendable {
        public var code: String
        public var message: String
    }

    private struct Wire: Decodable {
        var type: String
        var channel: String?
        var afterSeq: UInt64?
        var epoch: String?

        enum CodingKeys: String, CodingKey {
            case type, channel, epoch
            case afterSeq = "after_seq"
        }
    }

    /// Parses one text message. Anything that is not one of the protocol's frames is a
    /// `Rejection`, never a trap.
    public static func decode(_ bytes: some Collection<UInt8>) throws(Rejection) -> ClientFrame {
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(bytes))
        } catch {
            throw Rejection(code: FrameErrorCode.badFrame, message: "expected a JSON object with a string \"type\"")
        }
        switch wire.type {
        case FrameType.ping:
            // Nothing is subscribed by name: say so rather than let a channel look accepted.
            guard wire.channel == nil else {
                throw Rejection(code: FrameErrorCode.badFrame, message: "ping takes no \"channel\": events come by membership, never by subscription")
            }
            return .ping
        case FrameType.typing:
            return .typing(channel: try channel(of: wire))
        case FrameType.resume:
            let channel = try channel(of: wire)
            guard let afterSeq = wire.afterSeq else {
                throw Rejection(code: FrameErrorCode.badFrame, message: "resume needs a numeric \"after_seq\"")
            }
            if let epoch = wire.epoch, !StreamEpoch.isValid(epoch) {
                throw Rejection(code: FrameErrorCode.badResume, message: "epoch must be 1 to \(StreamEpoch.maxLength) characters of A-Z, a-z, 0-9, '_' and '-'")
            }
            return .resume(channel: channel, afterSeq: afterSeq, epoch: wire.epoch)
        default:
            let shown = wire.type.count > 32 ? "\(wire.type.prefix(32))…" : wire.type
            throw Rejection(code: FrameErrorCode.unknownType, message: "unknown frame type '\(shown)'")
        }
    }

    private static func channel(of wire: Wire) throws(Rejection) -> String {
        guard let channel = wire.channel else {
            throw Rejection(code: FrameErrorCode.badFrame, message: "\(wire.type) needs a \"channel\"")
        }
        if let problem = Identifier.problem(channel, kind: "channel") {
            throw Rejection(code: FrameErrorCode.invalidChannel, message: problem)
        }
        return channel
    }
}

extension ChatEvent {
    /// The UTF-8 bytes of the strings an event frame carries: sizes the frame's buffer once
    /// (escapes aside), rather than letting it grow through a text of a few hundred bytes.
    fileprivate var renderedStringBytes: Int {
        let body: Int
        switch self.body {
        case .messageCreated(let messageID, let text)?, .messageEdited(let messageID, let text)?: body = messageID.utf8.count + text.utf8.count
        case .messageDeleted(let messageID)?, .readReceipt(let messageID)?: body = messageID.utf8.count
        case .reaction(let messageID, let emoji, _)?: body = messageID.utf8.count + emoji.utf8.count
        case .channelUpdated(let name, let topic)?: body = name.utf8.count + topic.utf8.count
        case nil: body = 0
        }
        return eventID.utf8.count + senderID.utf8.count + body
    }
}
