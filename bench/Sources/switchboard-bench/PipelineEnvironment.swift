import Foundation
import NATSClient
import RedisClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
import Synchronization

/// The servers and connections of one `pipeline` run: nats-server -js and redis-server on free
/// loopback ports in a temp directory, the publisher/admin connection, the subscriber
/// connection, presence heartbeats, and (later) the `fanout` process. `stop()` ends all of it.
final class PipelineEnvironment: @unchecked Sendable {  // set up in init, mutated only by the bench's main thread
    /// Logs of every process of the run; kept after it with `keepLogs`.
    let scratch: TemporaryDirectory
    var directory: URL { scratch.url }
    let partitionCount: Int
    let keepLogs: Bool
    private let natsServer: NATSServerFixture
    private let redisServer: RedisServerFixture
    var nats: ServerProcess { natsServer.process }
    var redis: ServerProcess { redisServer.process }
    private(set) var fanout: ServerProcess?
    var natsPort: UInt16 { natsServer.port }
    var natsURL: String { natsServer.url }
    var redisURL: String { redisServer.url }
    /// Publishing and admin requests (consumer info, purge, delete).
    private(set) var publisher: NATSConnection!
    private(set) var jetStream: JetStream!
    /// Inbox and relay subscriptions, separate from the publisher.
    private(set) var subscriber: NATSConnection!
    private var heartbeat: Thread?
    private let heartbeatStop = Atomic<Bool>(false)
    private let heartbeatDone = Atomic<Bool>(false)
    private var stopped = false

    /// nats-server's HTTP monitoring port (/varz, /subsz), when started with `monitoring`.
    var natsMonitorPort: UInt16? { natsServer.monitorPort }
    /// The running fan-out's ops HTTP port (/metrics), once started.
    private(set) var fanoutHTTPPort: UInt16?

    /// `jetStreamStore`: nats-server's store folder when it must outlive this run (default: in
    /// the temp directory).
    init(partitionCount: Int, keepLogs: Bool, monitoring: Bool = false, jetStreamStore: URL? = nil) throws {
        self.partitionCount = partitionCount
        self.keepLogs = keepLogs
        scratch = try TemporaryDirectory(prefix: "switchboard-bench-pipeline")
        // A kept store is restored before the server listens: 20 M messages took ~70 s.
        natsServer = try NATSServerFixture(monitoring: monitoring, storeDirectory: jetStreamStore,
                                           listenTimeout: jetStreamStore == nil ? .seconds(15) : .seconds(600), directory: scratch)
        do {
            redisServer = try RedisServerFixture(directory: scratch)
        } catch {
            natsServer.stop(keepFiles: keepLogs)
            throw error
        }
        do {
            publisher = try NATSConnection(options: .init(url: natsURL, name: "bench-publisher"))
            jetStream = try publisher.jetStream(timeout: .seconds(10), maxPendingAsyncPublishes: 8_192)
            subscriber = try NATSConnection(options: .init(url: natsURL, name: "bench-subscriber", maxPendingBytes: 512 * 1024 * 1024, maxPendingMessages: 2_000_000))
        } catch {
            stop()
            throw error
        }
    }

    // MARK: workload

    /// Publishes every membership to `CHAT_MEMBERSHIP` (as upstream would), before the fan-out starts.
    func loadMembership(_ workload: PipelineWorkload) throws {
        for (channel, members) in workload.members.enumerated() {
            let channelID = workload.channelIDs[channel]
            for user in members {
                let userID = PipelineWorkload.userID(user)
                let change = MembershipChange(channelID: channelID, userID: userID, state: .joined, version: 1)
                try jetStream.publishAsync(Subjects.membership(channel: channelID, user: userID, partitionCount: partitionCount), payload: change.encoded())
            }
        }
        try jetStream.publishAsyncComplete(timeout: .seconds(60))
    }

    /// Writes presence as a notifier does (epoch, presence hash, instances zset, a delta per
    /// user on pub/sub) and keeps every instance heartbeating every 2 s until `stop()`.
    func registerPresence(_ workload: PipelineWorkload) throws {
        let redisClient = try RedisConnection(url: redisURL)
        defer { redisClient.close() }
        let instanceIDs = (0..<workload.shape.instances).map(PipelineWorkload.instanceID)
        var perInstance = [[(String, String)]](repeating: [], count: instanceIDs.count)
        for user in 0..<workload.shape.users where workload.instanceOf[user] >= 0 {
            perInstance[workload.instanceOf[user]].append((PipelineWorkload.userID(user), "\(workload.slots[user])"))
        }
        let now = Double(Int64(Date().timeIntervalSince1970 * 1000))
        for (index, instance) in instanceIDs.enumerated() {
            _ = try redisClient.command(["SET", PresenceKeys.epoch(instance: instance), "1"])
            var start = 0
            while start < perInstance[index].count {
                let end = min(start + 1000, perInstance[index].count)
                try redisClient.hset(PresenceKeys.users(instance: instance), Array(perInstance[index][start..<end]))
                start = end
            }
            _ = try redisClient.zadd(PresenceKeys.instances, score: now, member: instance)
            for (user, slot) in perInstance[index] {
                _ = try redisClient.publish(PresenceKeys.channel, PresenceDelta(instanceID: instance, epoch: 1, userID: user, slot: UInt32(slot) ?? 0, state: .online).encoded())
            }
        }
        let beatClient = try RedisConnection(url: redisURL)
        let thread = Thread { [self] in
            var nextBeat = ContinuousClock.now + .seconds(2)
            while !heartbeatStop.load(ordering: .relaxed) {
                if ContinuousClock.now >= nextBeat {
                    let now = Double(Int64(Date().timeIntervalSince1970 * 1000))
                    for instance in instanceIDs { _ = try? beatClient.zadd(PresenceKeys.instances, score: now, member: instance) }
                    nextBeat = ContinuousClock.now + .seconds(2)
                }
                usleep(100_000)
            }
            beatClient.close()
            heartbeatDone.store(true, ordering: .relaxed)
        }
        thread.name = "bench-heartbeat"
        heartbeat = thread
        thread.start()
    }

    // MARK: fan-out

    /// Starts `fanout` owning every partition and waits for /readyz (bounded).
    func startFanout(executable: String, streamsDir: String, timeout: Duration = .seconds(120)) throws -> Duration {
        let started = try ServerProcess.startService(
            name: "fanout", executable: executable, logURL: directory.appendingPathComponent("fanout.log"), readyTimeout: timeout
        ) { httpPort in
            [
                "--nats-url", natsURL, "--redis-url", redisURL, "--partition-count", "\(partitionCount)",
                "--partitions", "0-\(partitionCount - 1)", "--replica-id", "bench-fanout",
                "--http", "127.0.0.1:\(httpPort)", "--streams-dir", streamsDir,
            ]
        }
        fanout = started.process
        fanoutHTTPPort = started.port
        return started.readyAfter
    }

    /// Starts another `fanout` owning every partition (a replica of a pair; the caller stops
    /// it) and waits for /readyz.
    func startReplica(name: String, executable: String, streamsDir: String, timeout: Duration = .seconds(120)) throws -> ServerProcess {
        try ServerProcess.startService(
            name: name, executable: executable, logURL: directory.appendingPathComponent("\(name).log"), readyTimeout: timeout
        ) { httpPort in
            [
                "--nats-url", natsURL, "--redis-url", redisURL, "--partition-count", "\(partitionCount)",
                "--partitions", "0-\(partitionCount - 1)", "--replica-id", name,
                "--http", "127.0.0.1:\(httpPort)", "--streams-dir", streamsDir,
            ]
        }.process
    }

    // MARK: JetStream helpers

    /// Messages of consumer `name` on `CHAT_EVENTS` not yet delivered plus not yet acked, or
    /// nil when the consumer does not exist (yet) or the request failed.
    func consumerOutstanding(_ name: String) -> Int? {
        guard let reply = try? publisher.request("$JS.API.CONSUMER.INFO.CHAT_EVENTS.\(name)", payload: [], timeout: .seconds(2)),
              let object = try? JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any],
              object["error"] == nil else { return nil }
        return (object["num_ack_pending"] as? Int ?? 0) + (object["num_pending"] as? Int ?? 0)
    }

    /// Polls until every partition's consumer `<prefix><p>` has nothing outstanding (bounded).
    func waitDrained(prefix: String, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var drained = true
            for partition in 0..<partitionCount {
                guard let outstanding = consumerOutstanding("\(prefix)\(partition)"), outstanding == 0 else { drained = false; break }
            }
            if drained { return true }
            usleep(50_000)
        }
        return false
    }

    // MARK: shutdown

    /// Stops the fan-out, the heartbeats, the connections and the servers. Idempotent.
    func stop() {
        if stopped { return }
        stopped = true
        fanout?.stop(grace: .seconds(10))
        heartbeatStop.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(3)
        while heartbeat != nil && !heartbeatDone.load(ordering: .relaxed) && ContinuousClock.now < deadline { usleep(20_000) }
        subscriber?.close()
        publisher?.close()
        natsServer.stop(keepFiles: true)
        redisServer.stop(keepFiles: true)
        if keepLogs { scratch.keep() } else { scratch.remove() }
    }

    deinit { stop() }
}
