import Foundation
import NATSClient
import NIOHTTP1
import NIOPosix
import NotifierService
import ServiceSupport
import SwitchboardContracts
import Synchronization
import SwitchboardProto

/// `POST /demo/send` for local demos only: publishes a `MessageCreated` into `CHAT_EVENTS`
/// as the user of a bearer token, so that two browser tabs can talk through the real
/// pipeline (JetStream → fan-out → inbox → WebSocket).
///
/// Clients never publish chat messages in the product (messages come from upstream
/// services); this endpoint exists only when the notifier runs with `--demo-send`, and it
/// refuses everything a real upstream would: a bad token (401), a sender who is not a member
/// of the channel by `CHAT_MEMBERSHIP` (403, the same check the resume path makes), invalid
/// ids or text (400), and more than a few sends per second per process (429).
public final class DemoSender: Sendable {
    static let maxBodyBytes = 4096
    static let maxTextCharacters = 2000

    private let natsURL: String
    private let natsTLS: NATSConnection.Options.TLS?
    private let natsAuthentication: NATSConnection.Options.Authentication
    private let authenticator: TokenAuthenticator
    private let partitionCount: Int
    private let connection = Mutex<(NATSConnection, JetStream)?>(nil)
    private let bucket = Mutex(TokenBucket(rate: 5, burst: 10, nowNanos: DispatchTime.now().uptimeNanoseconds))

    /// The NATS connection is opened on the first send, so a notifier with the flag starts
    /// as fast as one without it.
    /// `natsTLS*`, `natsAuthentication`: the notifier's `--nats-tls-*` files and credentials,
    /// so the sender connects the same way.
    public init(natsURL: String, natsTLSCAFile: String? = nil, natsTLSCertFile: String? = nil, natsTLSKeyFile: String? = nil, natsAuthentication: NATSConnection.Options.Authentication = .init(), jwtSecret: [UInt8], partitionCount: Int) async {
        self.natsURL = natsURL
        natsTLS = .files(ca: natsTLSCAFile, cert: natsTLSCertFile, key: natsTLSKeyFile)
        self.natsAuthentication = natsAuthentication
        authenticator = await TokenAuthenticator(secret: jwtSecret)
        self.partitionCount = partitionCount
    }

    deinit {
        connection.withLock { $0?.0.close() }
    }

    /// Handles one request; `token` is the bearer token (or `?token=`), `body` the JSON
    /// `{"channel":"…","text":"…"}`.
    func send(token: String?, body: [UInt8]) async -> HTTPAnswer {
        let admitted = bucket.withLock { $0.take(nowNanos: DispatchTime.now().uptimeNanoseconds) }
        guard admitted else { return Self.failure(.tooManyRequests, "rate_limited", "too many demo sends; slow down") }
        let user: String
        switch await authenticator.authenticate(token) {
        case .failure(let failure):
            var reply = Self.failure(.unauthorized, failure.rawValue, failure.message)
            reply.headers += [(AuthFailure.header, failure.rawValue), ("WWW-Authenticate", "Bearer")]
            return reply
        case .success(let subject):
            user = subject
        }
        struct Request: Decodable { var channel: String; var text: String }
        guard let request = try? JSONDecoder().decode(Request.self, from: Data(body)) else {
            return Self.failure(.badRequest, "bad_request", #"send JSON {"channel":"…","text":"…"}"#)
        }
        if let problem = Identifier.problem(request.channel, kind: "channel") {
            return Self.failure(.badRequest, "bad_channel", problem)
        }
        let text = request.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, text.count <= Self.maxTextCharacters else {
            return Self.failure(.badRequest, "bad_text", "text must be 1-\(Self.maxTextCharacters) characters")
        }
        do {
            return try await NIOThreadPool.singleton.runIfActive { [self] in try publish(user: user, channel: request.channel, text: text) }
        } catch {
            connection.withLock { $0?.0.close(); $0 = nil }
            return Self.failure(.serviceUnavailable, "unavailable", "cannot publish: \(error)")
        }
    }

    /// Membership check and JetStream publish (blocking; runs on the process's thread pool).
    private func publish(user: String, channel: String, text: String) throws -> HTTPAnswer {
        let jetStream = try jetStream()
        guard try ChannelMembership.isMember(channel: channel, user: user, partitionCount: partitionCount, in: jetStream) else {
            return Self.failure(.forbidden, "not_member", "'\(user)' is not a member of channel '\(channel)'")
        }
        let id = UUID().uuidString
        let event = ChatEvent(
            eventID: id, channelID: channel, senderID: user, createdAtMs: Int64(Date().timeIntervalSince1970 * 1000),
            body: .messageCreated(messageID: id, text: text)
        )
        let ack = try jetStream.publish(Subjects.event(channel: channel, partitionCount: partitionCount), payload: event.encoded(), msgID: id)
        return HTTPAnswer(status: .ok, headers: Self.json, text: #"{"channel":"\#(channel)","seq":\#(ack.sequence),"event_id":"\#(id)"}"#)
    }

    private func jetStream() throws -> JetStream {
        try connection.withLock { connection in
            if let existing = connection { return existing.1 }
            let nats = try NATSConnection(options: .init(url: natsURL, name: "notifier-demo-send", tls: natsTLS, authentication: natsAuthentication))
            do {
                let jetStream = try nats.jetStream()
                connection = (nats, jetStream)
                return jetStream
            } catch {
                nats.close()
                throw error
            }
        }
    }

    private static let json = [("Content-Type", "application/json")]

    private static func failure(_ status: HTTPResponseStatus, _ code: String, _ message: String) -> HTTPAnswer {
        let json = (try? JSONSerialization.data(withJSONObject: ["error": code, "message": message], options: [.sortedKeys])) ?? Data()
        return HTTPAnswer(status: status, headers: Self.json, body: Array(json))
    }
}
