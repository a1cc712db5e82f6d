import FanoutService
import Foundation
import NATSClient
import RedisClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Synchronization

/// A real deployment for fan-out tests: nats-server, redis-server and `fanout` processes,
/// with helpers that play the upstream publisher and the notifiers' presence writes.
final class FanoutHarness: @unchecked Sendable {
    static let partitionCount = 16

    let nats: NATSServerFixture
    let redis: RedisServerFixture
    let connection: NATSConnection
    let jetStream: JetStream
    let redisClient: RedisConnection
    let logs: TemporaryDirectory
    private(set) var fanouts: [String: (process: ServerProcess, httpPort: UInt16)] = [:]
    private let inboxes = Mutex<[String: [NATSMessage]]>([:])
    private var inboxSubscription: NATSSubscription?
    private let beating = Mutex<[String: UInt64]>([:])
    private let stopBeating = Atomic<Bool>(false)

    init() throws {
        nats = try NATSServerFixture()
        redis = try RedisServerFixture()
        logs = try TemporaryDirectory(prefix: "switchboard-test-fanout")
        connection = try NATSConnection(options: .init(url: nats.url, name: "fanout-test"))
        jetStream = try connection.jetStream()
        // The deployment's streams exist before upstream publishes (routectl streams apply).
        _ = try StreamDefinitions(directory: RepositoryPaths.streams)
            .apply(subjectTransforms: jetStream.serverSupportsStreamSubjectTransforms(), jetStream.applyStream(configJSON:))
        redisClient = try RedisConnection(url: redis.url)
        inboxSubscription = try connection.subscribe(Subjects.allInboxes) { [weak self] message in
            let instance = String(Subjects.inboxInstance(message.subject) ?? "")
            self?.inboxes.withLock { $0[instance, default: []].append(message) }
        }
        // Heartbeats for the simulated notifiers, as a notifier would send them every 2 s.
        Thread { [self] in
            while !stopBeating.load(ordering: .relaxed) {
                let now = Double(Int64(Date().timeIntervalSince1970 * 1000))
                for instance in beating.withLock({ Array($0.keys) }) {
                    _ = try? redisClient.zadd(PresenceKeys.instances, score: now, member: instance)
                }
                usleep(200_000)
            }
        }.start()
    }

    /// Starts a `fanout` process and waits until it reports ready.
    @discardableResult
    func startFanout(name: String = "fanout-a", partitions: String = "0-15", extra: [String] = []) throws -> ServerProcess {
        let (process, port, _) = try ServerProcess.startService(
            name: name, executable: BuiltProducts.path("fanout"),
            logURL: logs.url.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(4)).log"), readyTimeout: .seconds(30)
        ) { port in
            [
                "--nats-url", nats.url, "--redis-url", redis.url, "--partitions", partitions, "--replica-id", name,
                "--http", "127.0.0.1:\(port)", "--streams-dir", RepositoryPaths.streams, "--log-level", "debug",
            ] + extra
        }
        fanouts[name] = (process, port)
        return process
    }

    func fanoutLog(_ name: String = "fanout-a") -> String { fanouts[name]?.process.log() ?? "" }

    // MARK: upstream

    func join(_ user: String, _ channel: String, version: UInt64 = 1) throws {
        let change = MembershipChange(channelID: channel, userID: user, state: .joined, version: version)
        _ = try jetStream.publish(Subjects.membership(channel: channel, user: user, partitionCount: Self.partitionCount), payload: change.encoded())
    }

    func leave(_ user: String, _ channel: String, version: UInt64 = 2) throws {
        let change = MembershipChange(channelID: channel, userID: user, state: .left, version: version)
        _ = try jetStream.publish(Subjects.membership(channel: channel, user: user, partitionCount: Self.partitionCount), payload: change.encoded())
    }

    @discardableResult
    func publishEvent(channel: String, sender: String = "sender", text: String = "hi", id: String = UUID().uuidString) throws -> UInt64 {
        let event = ChatEvent(eventID: id, channelID: channel, senderID: sender, createdAtMs: 1, body: .messageCreated(messageID: id, text: text))
        return try jetStream.publish(Subjects.event(channel: channel, partitionCount: Self.partitionCount), payload: event.encoded(), msgID: id).sequence
    }

    // MARK: notifiers (presence as a notifier writes it)

    /// alice online on n1 (slot 0) and bob on n2 (slot `bobSlot`), both members of `general`, and a
    /// started fan-out; true once it routes `general` to both instances.
    func startWithAliceOnN1AndBobOnN2(bobSlot: UInt32 = 0) throws -> Bool {
        try join("alice", "general")
        try join("bob", "general")
        try goOnline(instance: "n1", users: ["alice": 0])
        try goOnline(instance: "n2", users: ["bob": bobSlot])
        try startFanout()
        return eventually(timeout: .seconds(5)) { try self.inspect(Inspection.channelSubject, "general", as: Inspection.Channel.self).targets.count == 2 }
    }

    /// Registers `instance` at `epoch` with `users` (user → slot) and keeps it heartbeating.
    func goOnline(instance: String, epoch: UInt64 = 1, users: [String: UInt32]) throws {
        _ = try redisClient.command(["SET", PresenceKeys.epoch(instance: instance), "\(epoch)"])
        if !users.isEmpty { try redisClient.hset(PresenceKeys.users(instance: instance), users.map { ($0.key, "\($0.value)") }) }
        _ = try redisClient.zadd(PresenceKeys.instances, score: Double(Int64(Date().timeIntervalSince1970 * 1000)), member: instance)
        beating.withLock { $0[instance] = epoch }
        for (user, slot) in users {
            _ = try redisClient.publish(PresenceKeys.channel, PresenceDelta(instanceID: instance, epoch: epoch, userID: user, slot: slot, state: .online).encoded())
        }
    }

    func stopHeartbeat(instance: String) { _ = beating.withLock { $0.removeValue(forKey: instance) } }

    // MARK: inboxes

    func deliveries(_ instance: String) -> [Delivery] {
        inboxes.withLock { $0[instance] ?? [] }.flatMap { (try? Deliveries(decoding: $0.payload).deliveries) ?? [] }
    }

    func inboxMessages(_ instance: String) -> [NATSMessage] { inboxes.withLock { $0[instance] ?? [] } }

    var instancesWithMessages: Set<String> { inboxes.withLock { Set($0.keys) } }

    func clearInboxes() { inboxes.withLock { $0.removeAll() } }

    /// True once the fan-out routes to `user`: its inspection says online (within 5 s).
    func routes(to user: String) -> Bool {
        eventually(timeout: .seconds(5)) { try self.inspect(Inspection.userSubject, user, as: Inspection.User.self).online }
    }

    /// Inspection request answered by the fan-out replicas (first reply).
    func inspect<T: Decodable>(_ subject: String, _ id: String = "", as type: T.Type) throws -> T {
        let reply = try connection.request(subject, payload: Array(id.utf8), timeout: .seconds(2))
        return try JSONDecoder().decode(T.self, from: Data(reply.payload))
    }

    func stop() {
        stopBeating.store(true, ordering: .relaxed)
        for (_, fanout) in fanouts { fanout.process.stop() }
        inboxSubscription?.unsubscribe()
        connection.close()
        redisClient.close()
        nats.stop()
        redis.stop()
        logs.remove()
    }
}

extension FanoutHarness {
    /// Complete snapshot manifests in `ROUTING_SNAPSHOTS`, one per partition at most.
    func snapshotManifests() -> Int {
        (0..<Self.partitionCount).filter { (try? jetStream.lastMessage(stream: StreamNames.snapshots, subject: SnapshotSubjects.manifest(partition: $0))) != nil }.count
    }

    /// Member count per channel as the running fan-out reports it.
    func tableFingerprint(channels: [String]) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for channel in channels { result[channel] = try inspect(Inspection.channelSubject, channel, as: Inspection.Channel.self).members }
        return result
    }

    /// Messages of a partition's durable consumer not yet acknowledged.
    func jetStreamConsumerPending(partition: Int) -> Int? { fanoutConsumerUnacked(connection, partition: partition) }

    func httpPort(_ name: String = "fanout-a") -> UInt16? { fanouts[name]?.httpPort }
}

/// Messages of a partition's durable consumer not yet acknowledged (pending plus unacked), from
/// the JetStream API; nil when it does not answer. The consumer is the one the partition's
/// lease entry names (the plain `fanout-p<p>` when there is none: a pipeline run in-process).
func fanoutConsumerUnacked(_ connection: NATSConnection, partition: Int) -> Int? {
    let consumer = leaseConsumer(connection, partition: partition) ?? ConsumerNames.fanout(partition: partition)
    guard let reply = try? connection.request("$JS.API.CONSUMER.INFO.\(StreamNames.events).\(consumer)", payload: [], timeout: .seconds(2)),
          let object = try? JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any] else { return nil }
    return (object["num_ack_pending"] as? Int ?? 0) + (object["num_pending"] as? Int ?? 0)
}

/// The partition's lease entry in `FANOUT_LEASES`, decoded; nil when there is none.
func leaseEntry(_ connection: NATSConnection, partition: Int) -> [String: Any]? {
    let request = Array("{\"last_by_subj\":\"\(LeaseSubjects.lease(partition: partition))\"}".utf8)
    guard let reply = try? connection.request("$JS.API.STREAM.MSG.GET.\(StreamNames.leases)", payload: request, timeout: .seconds(2)),
          let object = try? JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any],
          let message = object["message"] as? [String: Any], let data = (message["data"] as? String).flatMap({ Data(base64Encoded: $0) }),
          var entry = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
    entry["revision"] = message["seq"]
    return entry
}

/// The consumer the partition's lease entry names.
func leaseConsumer(_ connection: NATSConnection, partition: Int) -> String? { leaseEntry(connection, partition: partition)?["consumer"] as? String }

extension FanoutHarness {
    func stopFanout(_ name: String) { fanouts[name]?.process.stop() }
}
