import Foundation
import NATSClient
import NotifierDemo
import NotifierService
import RedisClient
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness

/// A real nats-server and redis-server with the built `notifier` executable between them.
/// `stop()` in a `defer`; every process is also stopped by its deinit.
final class NotifierFixture: @unchecked Sendable {
    static let secret = "switchboard-notifier-test-secret-0123456789"

    let nats: NATSServerFixture
    let redis: RedisServerFixture
    let instanceID: String
    let port: Int
    let notifier: ServerProcess
    let directory: TemporaryDirectory
    let issuer: TokenIssuer

    /// `natsArguments` go to nats-server (e.g. `-m <port>` for its monitoring endpoint).
    init(instanceID: String = "n1", arguments: [String] = [], environment: [String: String] = [:], natsArguments: [String] = []) async throws {
        nats = try NATSServerFixture(extraArguments: natsArguments)
        redis = try RedisServerFixture()
        directory = try TemporaryDirectory(prefix: "switchboard-test-notifier")
        self.instanceID = instanceID
        port = Int(try LoopbackPort.free())
        notifier = try ServerProcess(
            name: "notifier",
            executable: BuiltProducts.path("notifier"),
            arguments: [
                "--instance-id", instanceID, "--nats-url", nats.url, "--redis-url", redis.url,
                "--listen", "127.0.0.1:\(port)", "--jwt-secret", Self.secret, "--event-loop-threads", "2",
            ] + (arguments.contains("--drain-seconds") ? [] : ["--drain-seconds", "0.2"]) + arguments,
            environment: environment,
            logURL: directory.url.appendingPathComponent("notifier.log")
        )
        issuer = await TokenIssuer(secret: Array(Self.secret.utf8))
        try notifier.waitUntilReady(port: UInt16(port), timeout: .seconds(15))
    }

    func stop() {
        notifier.stop()
        nats.stop()
        shutDownRedis()
        redis.stop()
        directory.remove()
    }

    /// Stops redis-server with `SHUTDOWN NOSAVE`: started from the test runner it does not
    /// act on SIGTERM (seen: `ServerProcess.stop` then waits out its 5 s grace period).
    func shutDownRedis() {
        guard let connection = try? redisConnection() else { return }
        _ = try? connection.command(["SHUTDOWN", "NOSAVE"])
        connection.close()
        _ = redis.process.waitForExit(timeout: .seconds(2))
    }

    func token(_ user: String) async throws -> String {
        try await issuer.token(user: user)
    }

    /// A WebSocket for `user`, past its hello frame.
    func connect(_ token: String, receiveBuffer: Int? = nil) throws -> WebSocketTestClient {
        try connectReadingHello(token, receiveBuffer: receiveBuffer).client
    }

    /// Connects to `/ws?<query>` and reads the `hello` frame.
    func connectReadingHello(_ token: String, query: String? = nil, receiveBuffer: Int? = nil) throws -> (client: WebSocketTestClient, hello: String) {
        let client = try WebSocketTestClient(port: port, path: query.map { "/ws?\($0)" } ?? "/ws", headers: ["Authorization": "Bearer \(token)"], receiveBuffer: receiveBuffer)
        guard let hello = try client.receiveText(), hello.contains(#""type":"hello""#) else {
            throw WebSocketTestClient.Failure.io("no hello frame")
        }
        return (client, hello)
    }

    func natsConnection() throws -> NATSConnection {
        try NATSConnection(options: .init(url: nats.url, name: "notifier-test"))
    }

    /// JetStream over `nats` with `CHAT_EVENTS` and `CHAT_MEMBERSHIP` applied from `streams/`.
    func chatStreams(over nats: NATSConnection) throws -> JetStream {
        let jetStream = try nats.jetStream()
        for name in [StreamNames.events, StreamNames.membership] {
            let definition = try Data(contentsOf: URL(fileURLWithPath: RepositoryPaths.streams).appendingPathComponent("\(name).json"))
            _ = try jetStream.applyStream(configJSON: Array(definition))
        }
        return jetStream
    }

    /// Publishes `user`'s membership `state` of `channel` to `CHAT_MEMBERSHIP` as the upstream
    /// does (a channel deletion under the reserved user of its subject).
    func publishMembership(_ channel: String, _ user: String, _ state: MembershipChange.State = .joined, version: UInt64 = 1, over jetStream: JetStream) throws {
        let change = MembershipChange(channelID: channel, userID: user, state: state, version: version)
        let subjectUser = state == .channelDeleted ? Subjects.channelDeletedUser : user
        _ = try jetStream.publish(Subjects.membership(channel: channel, user: subjectUser, partitionCount: 16), payload: change.encoded())
    }

    /// Stores a message-created event by bob in `channel` (`id` names the event and its
    /// message) and returns its stream sequence.
    @discardableResult
    func publishEvent(_ id: String, channel: String = "general", over jetStream: JetStream) throws -> UInt64 {
        let event = ChatEvent(eventID: id, channelID: channel, senderID: "bob", createdAtMs: 1, body: .messageCreated(messageID: "m-\(id)", text: "t-\(id)"))
        return try jetStream.publish(Subjects.event(channel: channel, partitionCount: 16), payload: event.encoded(), msgID: id).sequence
    }

    /// The JSON frames `client` receives up to and including the first of `type` (all of
    /// them when none comes within the receive timeout).
    func frames(_ client: WebSocketTestClient, until type: String) throws -> [[String: Any]] {
        var frames: [[String: Any]] = []
        while let text = try client.receiveText() {
            guard let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { continue }
            frames.append(json)
            if json["type"] as? String == type { break }
        }
        return frames
    }

    func redisConnection() throws -> RedisConnection {
        try RedisConnection(url: redis.url, timeout: .seconds(2))
    }

    /// The slot the notifier registered for `user` in Redis (waits for it).
    func slot(of user: String, timeout: Duration = .seconds(5)) throws -> UInt32? {
        let redis = try redisConnection()
        defer { redis.close() }
        var slot: UInt32?
        eventually(timeout: timeout) {
            slot = (try? redis.command(["HGET", PresenceKeys.users(instance: instanceID), user]))?.text.flatMap { UInt32($0) }
            return slot != nil
        }
        return slot
    }

    /// Publishes one `Deliveries` message with a message-created event per item, in order.
    func deliver(_ items: [(seq: UInt64, channel: String, slots: [UInt32])], over connection: NATSConnection) throws {
        let deliveries = items.map { item in
            let event = ChatEvent(eventID: "e\(item.seq)", channelID: item.channel, senderID: "sender", createdAtMs: 1_700_000_000_000, body: .messageCreated(messageID: "m\(item.seq)", text: "t\(item.seq)"))
            return Delivery(streamSeq: item.seq, channelID: item.channel, event: event.encoded(), slots: item.slots)
        }
        try connection.publish(Subjects.inbox(instance: instanceID), payload: Deliveries(epoch: "", deliveries: deliveries).encoded())
        try connection.flush(timeout: .seconds(2))
    }

    /// Publishes a `Delivery` of a message-created event to this instance's inbox, alone in
    /// its `Deliveries` message.
    func deliver(seq: UInt64, channel: String = "general", text: String = "hello", slots: [UInt32], over connection: NATSConnection) throws {
        let event = ChatEvent(eventID: "e\(seq)", channelID: channel, senderID: "sender", createdAtMs: 1_700_000_000_000, body: .messageCreated(messageID: "m\(seq)", text: text))
        let delivery = Delivery(streamSeq: seq, channelID: channel, event: event.encoded(), slots: slots)
        var headers = NATSHeaders()
        headers[InboxKind.header] = InboxKind.delivery
        try connection.publish(Subjects.inbox(instance: instanceID), payload: Deliveries(epoch: "", deliveries: [delivery]).encoded(), headers: headers)
        try connection.flush(timeout: .seconds(2))
    }

    func metrics() -> String {
        (try? HTTPProbe.get(port: UInt16(port), path: "/metrics").body) ?? ""
    }

    /// The value of one series of `/metrics`, e.g. `switchboard_notifier_closes_total{reason="slow_consumer"}`.
    func metric(_ series: String) -> Double? {
        for line in metrics().split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
