import Foundation
import NIOHTTP1
import NotifierDemo
import NotifierService
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Testing

/// What a WebSocket client controls, fuzzed: its text frames, its token, and the upgrade
/// request's token location. See FuzzDriver.swift for seeds and time boxes.
@Suite struct ClientFrameFuzzTests {
    static let codes: Set<String> = ["bad_frame", "unknown_type", "invalid_channel", "bad_resume"]

    @Test func clientFrameDecoderNeverTrapsAndAcceptsOnlyValidChannels() {
        let corpus = [
            #"{"type":"ping"}"#,
            #"{"type":"typing","channel":"general"}"#,
            #"{"type":"resume","channel":"general","after_seq":42}"#,
            #"{"type":"resume","channel":"g-1_X","after_seq":18446744073709551615}"#,
            #"{"type":"subscribe","channel":"secret"}"#,
            #"{"type":"typing","channel":"general","user":"mallory"}"#,
            #" { "after_seq" : 1 , "channel" : "c" , "type" : "resume" } "#,
            #"{"type":"resume","channel":"general","after_seq":42,"epoch":"1pk3v0i9x2s4"}"#,
        ].map { Array($0.utf8) }
        let result = FuzzDriver.run("ClientFrame", corpus: corpus, generate: JSONGenerator.generate) { bytes in
            do {
                switch try ClientFrame.decode(bytes) {
                case .ping:
                    return .accepted
                case .typing(let channel):
                    return Identifier.isValid(channel) ? .accepted : .violation("accepted channel '\(channel)'")
                case .resume(let channel, _, let epoch):
                    guard Identifier.isValid(channel) else { return .violation("accepted channel '\(channel)'") }
                    return epoch.map(StreamEpoch.isValid) ?? true ? .accepted : .violation("accepted epoch '\(epoch ?? "")'")
                }
            } catch let error as ClientFrame.Rejection {
                guard Self.codes.contains(error.code) else { return .violation("unknown rejection code \(error.code)") }
                // An error frame never echoes more than a bounded excerpt of what was sent.
                guard error.message.utf8.count <= 400 + bytes.count else { return .violation("error message of \(error.message.utf8.count) bytes") }
                return .rejected
            } catch {
                return .violation("untyped error \(error)")
            }
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
        #expect(result.report.residentGrowthBytes < 128 << 20, "\(result.report)")
    }

    /// An upstream event is rendered into the frame every recipient parses: whatever its
    /// strings hold (quotes, control characters, repaired UTF-8), the frame is one JSON object
    /// whose fields carry exactly the decoded values — no field can be injected.
    @Test func eventFramesFromAnyDecodableEventAreValidJSONCarryingTheSameStrings() {
        let corpus = [
            ChatEvent(eventID: "e\"1", channelID: "general", senderID: "bob", createdAtMs: -7, body: .messageCreated(messageID: "m", text: "\",\"type\":\"hello\u{0}\n\u{1F}")),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s\\", createdAtMs: .max, body: .reaction(messageID: "m", emoji: "👍🏽", removed: true)),
            ChatEvent(eventID: "e", channelID: "c", senderID: "s", createdAtMs: .min, body: .channelUpdated(name: "</script>", topic: "\u{2028}")),
            ChatEvent(eventID: "", channelID: "", senderID: "", createdAtMs: 0, body: nil),
        ].map { $0.encoded() }
        let result = FuzzDriver.run("EventFrame", corpus: corpus) { bytes in
            guard let event = try? ChatEvent(decoding: bytes) else { return .rejected }
            let frame = ServerFrame.event(channel: "general", seq: 42, prev: 41, epoch: "e", event: event)
            guard let json = (try? JSONSerialization.jsonObject(with: Data(frame))) as? [String: Any],
                  let rendered = json["event"] as? [String: Any] else {
                return .violation("frame is not a JSON object: \(String(decoding: frame, as: UTF8.self))")
            }
            guard json.count == 6, json["type"] as? String == "event", json["channel"] as? String == "general",
                  json["prev"] as? Int == 41, json["epoch"] as? String == "e",
                  rendered["id"] as? String == event.eventID, rendered["sender"] as? String == event.senderID,
                  (rendered["created_at_ms"] as? NSNumber)?.int64Value == event.createdAtMs else {
                return .violation("frame fields differ from the event: \(json)")
            }
            if case .messageCreated(_, let text)? = event.body, rendered["text"] as? String != text { return .violation("text differs: \(json)") }
            return .accepted
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
    }

    /// JSON nested far deeper than any frame needs (up to the 16 KB frame limit and beyond)
    /// is refused by the parser's depth limit, in bounded time and stack.
    @Test func deeplyNestedJSONIsRejectedNotAStackOverflow() {
        for depth in [600, 8_000, 100_000] {
            for (open, close) in [("[", "]"), (#"{"a":"#, "}")] {
                let text = #"{"type":"ping","x":"# + String(repeating: open, count: depth) + "1" + String(repeating: close, count: depth) + "}"
                let started = ContinuousClock.now
                #expect(throws: ClientFrame.Rejection.self) { try ClientFrame.decode(Array(text.utf8)) }
                #expect(ContinuousClock.now - started < .seconds(2))
            }
        }
    }

    @Test func frameAskingToSubscribeOrCarryingAChannelOnPingIsRefused() {
        for text in [
            #"{"type":"subscribe","channel":"secret"}"#,
            #"{"type":"subscribe","subject":"\#(Subjects.inbox(instance: "n2"))"}"#,
            #"{"type":"sub","subject":">"}"#,
            #"{"type":"ping","channel":"secret"}"#,
        ] {
            #expect(throws: ClientFrame.Rejection.self, "\(text)") { try ClientFrame.decode(Array(text.utf8)) }
        }
    }

    /// Tokens mutated from valid ones: whatever JWTKit accepts must name the user it was
    /// issued to (no mutation forges another subject) and every refusal is a typed reason.
    @Test func tokenVerifierNeverTrapsAndNeverYieldsAnotherSubject() async throws {
        let secret = Array("switchboard-fuzz-secret-0123456789abcdef".utf8)
        let issuer = await TokenIssuer(secret: secret)
        let authenticator = await TokenAuthenticator(secret: secret)
        let subjects = ["alice", "bob", "carol-2"]
        var corpus: [[UInt8]] = []
        for subject in subjects { corpus.append(Array(try await issuer.token(user: subject).utf8)) }
        corpus.append(Array(try await issuer.token(subject: nil, expiresAt: Date().addingTimeInterval(60)).utf8))
        corpus.append(Array(try await issuer.token(subject: "dave", expiresAt: nil).utf8))
        var session = FuzzSession("JWT", corpus: corpus, generate: TokenGenerator.generate)
        while let input = session.next() {
            let token = String(decoding: input, as: UTF8.self)
            let outcome: FuzzOutcome = switch await authenticator.authenticate(token) {
            case .success(let subject): subjects.contains(subject) ? .accepted : .violation("accepted subject '\(subject)'")
            case .failure: .rejected
            }
            session.record(outcome, for: input)
        }
        let result = session.finish()
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
    }

    /// The upgrade request's token extraction (header and query string) on hostile URIs.
    @Test func tokenExtractionNeverTraps() {
        let corpus = [
            "/ws?token=abc", "/ws?a=1&token=%41%42", "/ws?token=%zz", "/ws?token=", "/ws?&&token=x&token=y", "/ws",
        ].map { Array($0.utf8) }
        let result = FuzzDriver.run("TokenLocation", corpus: corpus) { bytes in
            let uri = String(decoding: bytes, as: UTF8.self)
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)
            let fromQuery = TokenAuthenticator.token(from: head)
            head.headers.add(name: "Authorization", value: "Bearer " + uri)
            let fromHeader = TokenAuthenticator.token(from: head)
            // A Bearer credential is taken from what was sent, never made up.
            if let fromHeader, !fromHeader.isEmpty, !uri.contains(fromHeader), fromHeader != fromQuery {
                return .violation("header token '\(fromHeader)' is not part of '\(uri)'")
            }
            return fromQuery == nil ? .rejected : .accepted
        }
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "\n"))")
        #expect(result.report.accepted > 0 && result.report.rejected > 0, "\(result.report)")
    }
}

/// Random JSON texts around the client protocol's shape: known and unknown keys, every
/// JSON type in every place, escapes, surrogates, huge numbers, deep nesting, bad UTF-8.
enum JSONGenerator {
    static let keys = ["type", "channel", "after_seq", "user", "subject", "channels", "instance", "\u{0}", "type\u{0}", "Type"]
    static let types = ["ping", "typing", "resume", "subscribe", "unsubscribe", "hello", "event", "", "PING", "ping\u{0}", "typing "]
    static let strings = ["general", "secret", "", "a b", Subjects.inbox(instance: "n1"), ">", "*", "chat.events.*.*", String(repeating: "a", count: 65), "\u{FFFD}", "é"]

    static func generate(_ random: inout FuzzRandom, _ corpus: [[UInt8]]) -> [UInt8] {
        var text = ""
        if random.chance(8) {
            let depth = Int(random.next() % 3000)
            text = #"{"type":"typing","channel":"# + String(repeating: "[", count: depth) + #""general""# + String(repeating: "]", count: depth) + "}"
        } else {
            value(&text, depth: 0, top: true, using: &random)
        }
        var bytes = Array(text.utf8)
        if random.chance(3) { bytes = FuzzMutator.mutate(bytes, corpus: corpus, using: &random) }
        return bytes
    }

    static func value(_ text: inout String, depth: Int, top: Bool = false, using random: inout FuzzRandom) {
        switch top ? 0 : random.next() % (depth > 6 ? 5 : 7) {
        case 0:
            text += "{"
            let count = Int(random.next() % 5)
            for index in 0..<count {
                if index > 0 { text += "," }
                let key = random.chance(3) ? keys[Int(random.next() % UInt64(keys.count))] : ["type", "channel", "after_seq"][index % 3]
                string(key, into: &text)
                text += ":"
                if key == "type", random.chance(2) {
                    string(types[Int(random.next() % UInt64(types.count))], into: &text)
                } else if key == "channel", random.chance(2) {
                    string(strings[Int(random.next() % UInt64(strings.count))], into: &text)
                } else {
                    value(&text, depth: depth + 1, using: &random)
                }
            }
            text += "}"
        case 1: string(strings[Int(random.next() % UInt64(strings.count))], into: &text)
        case 2: text += ["0", "-1", "42", "18446744073709551615", "18446744073709551616", "1e308", "1e999", "-0", "0.5", "00", "1E+2", "NaN", "Infinity"][Int(random.next() % 13)]
        case 3: text += ["true", "false", "null", "tru", "nul"][Int(random.next() % 5)]
        case 4: text += [#""\ud800""#, #""\udc00\ud800""#, #""\u0000""#, #""\x41""#, #""\"#, #""\uZZZZ""#, "\"\u{7}\""][Int(random.next() % 7)]
        default:
            text += "["
            for index in 0..<Int(random.next() % 4) {
                if index > 0 { text += "," }
                value(&text, depth: depth + 1, using: &random)
            }
            text += "]"
        }
    }

    static func string(_ value: String, into text: inout String) {
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case _ where scalar.value < 0x20: text += String(format: "\\u%04x", scalar.value)
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}

/// Tokens broken part by part: headers with `alg: none` or other algorithms, payloads with
/// another `sub` under the original signature, signatures cut or swapped, parts missing.
enum TokenGenerator {
    static func base64URL(_ text: String) -> String {
        Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func generate(_ random: inout FuzzRandom, _ corpus: [[UInt8]]) -> [UInt8] {
        let original = String(decoding: corpus[Int(random.next() % UInt64(corpus.count))], as: UTF8.self)
        var parts = original.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { return Array(original.utf8) }
        let exp = Int(Date().timeIntervalSince1970) + 600
        switch random.next() % 7 {
        case 0: parts[0] = base64URL(#"{"alg":"none","typ":"JWT"}"#)
        case 1: parts[0] = base64URL([#"{"alg":"HS512"}"#, #"{"alg":"RS256"}"#, #"{"alg":"none"}"#, #"{}"#, #"{"alg":"HS256","kid":"../../x"}"#][Int(random.next() % 5)])
        case 2: parts[1] = base64URL(#"{"sub":"mallory","exp":\#(exp)}"#)
        case 3: parts[1] = base64URL([#"{"sub":"alice","exp":"never"}"#, #"{"sub":["alice"],"exp":1}"#, #"{"sub":"alice","exp":1e999}"#, "[]", "null", #"{"sub":"alice","exp":-9223372036854775809}"#][Int(random.next() % 6)])
        case 4: parts[2] = random.chance(2) ? "" : String(parts[2].prefix(Int(random.next() % 40)))
        case 5: parts = Array(parts.prefix(Int(random.next() % 3)))
        default: parts.append(parts[2])
        }
        var bytes = Array(parts.joined(separator: ".").utf8)
        if random.chance(3) { bytes = FuzzMutator.mutate(bytes, corpus: corpus, using: &random) }
        return bytes
    }
}
