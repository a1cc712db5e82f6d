import Foundation
import NATSClient
import NotifierDemo
import NotifierService
import RedisClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import SwitchboardHarness
#if canImport(Glibc)
import Glibc
#endif

/// A whole Switchboard deployment as processes: nats-server (one, or a three-node JetStream
/// cluster), redis-server, `fanout` and `notifier` executables, with the test playing the
/// upstream publisher and the operator (`routectl`). `stop()` in a `defer`; every process
/// is also stopped by its own deinit.
final class Deployment: @unchecked Sendable {
    static let partitionCount = 16
    static let secret = "switchboard-end-to-end-test-secret-0123456789"

    enum Topology { case single, cluster }

    /// The users of `deploy/nats/users.conf`: one per role, and one per notifier instance
    /// (its `--instance-id`).
    static let natsUsers = ["fanout", "notifier-0", "notifier-1", "notifier-2", "notifier-3", "publisher", "routectl", "routectl-admin"]

    let single: NATSServerFixture?
    let cluster: NATSClusterFixture?
    let redis: RedisServerFixture
    let logs: TemporaryDirectory
    let issuer: TokenIssuer
    /// The test's own NATS client: publishes upstream traffic (as the publisher role).
    let connection: NATSConnection
    let jetStream: JetStream
    /// Asks the fan-out, as routectl does (the routectl user; the same connection without roles).
    let operatorConnection: NATSConnection
    /// With `roles`: each role's password (the server runs `deploy/nats/server.conf`).
    private let passwords: [String: String]?
    /// With `roles`: the CA of the server's TLS certificate, which every client is given.
    let natsCA: String?
    private let lock = NSLock()
    private var fanouts: [String: (process: ServerProcess, httpPort: UInt16, arguments: [String])] = [:]
    private var notifiers: [String: (process: ServerProcess, port: Int)] = [:]

    /// What services get as `--nats-url`: every node of a cluster, comma-separated.
    var natsURL: String { natsURL(user: "publisher") }

    /// The URL with `role`'s user and password in it, when the server has users.
    func natsURL(user: String) -> String { Self.url(cluster, single, passwords, user) }

    /// `roles`: nats-server runs `deploy/nats/server.conf` (one user per role, least privilege)
    /// on TLS, and every service and client connects as its role, trusting the server's CA.
    init(topology: Topology = .single, roles: Bool = false) async throws {
        let passwords = roles ? Dictionary(uniqueKeysWithValues: Self.natsUsers.map { ($0, "pw" + UUID().uuidString.replacingOccurrences(of: "-", with: "")) }) : nil
        self.passwords = passwords
        for (user, password) in passwords ?? [:] {
            setenv("SWITCHBOARD_\(user.uppercased().replacingOccurrences(of: "-", with: "_"))_PASSWORD", password, 1)
        }
        logs = try TemporaryDirectory(prefix: "switchboard-test-e2e")
        let certificates = roles ? try TestCertificates(in: logs.url) : nil
        natsCA = certificates?.caFile
        switch topology {
        case .single:
            single = try NATSServerFixture(extraArguments: certificates.map {
                ["-c", RepositoryPaths.root.appendingPathComponent("deploy/nats/server.conf").path, "--tls", "--tlscert", $0.certFile, "--tlskey", $0.keyFile]
            } ?? [])
            cluster = nil
        case .cluster:
            single = nil
            cluster = try NATSClusterFixture()
        }
        redis = try RedisServerFixture()
        issuer = await TokenIssuer(secret: Array(Self.secret.utf8))
        let tls = natsCA.map { NATSConnection.Options.TLS(caFile: $0) }
        connection = try NATSConnection(options: .init(url: Self.url(cluster, single, passwords, "publisher"), name: "e2e-test", connectTimeout: .seconds(2), reconnectWait: .milliseconds(100), tls: tls))
        jetStream = try connection.jetStream(timeout: .seconds(2))
        operatorConnection = roles
            ? try NATSConnection(options: .init(url: Self.url(cluster, single, passwords, "routectl"), name: "e2e-operator", connectTimeout: .seconds(2), reconnectWait: .milliseconds(100), tls: tls))
            : connection
    }

    private static func url(_ cluster: NATSClusterFixture?, _ single: NATSServerFixture?, _ passwords: [String: String]?, _ user: String) -> String {
        let url = cluster?.url ?? single!.url
        guard let password = passwords?[user] else { return url }
        return url.replacingOccurrences(of: "nats://", with: "nats://\(user):\(password)@")
    }

    // MARK: fan-out

    /// Starts a `fanout` replica (it applies the streams, R3 on a cluster) and waits for ready.
    func startFanout(name: String = "fanout-0", partitions: String = "0-15", extra: [String] = []) throws {
        var arguments = extra + (natsCA.map { ["--nats-tls-ca", $0] } ?? []) + [
            "--nats-url", natsURL(user: "fanout"), "--redis-url", redis.url, "--partitions", partitions, "--replica-id", name,
            "--streams-dir", RepositoryPaths.streams, "--log-level", "info",
        ]
        if cluster != nil { arguments += ["--stream-replicas", "3"] }
        try launchFanout(name: name, arguments: arguments)
    }

    private func launchFanout(name: String, arguments: [String]) throws {
        let (process, port, _) = try ServerProcess.startService(
            name: name, executable: BuiltProducts.path("fanout"),
            logURL: logs.url.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(4)).log"), readyTimeout: .seconds(40)
        ) { port in arguments + ["--http", "127.0.0.1:\(port)"] }
        lock.withLock { fanouts[name] = (process, port, arguments) }
    }

    func fanout(_ name: String = "fanout-0") -> ServerProcess? { lock.withLock { fanouts[name]?.process } }
    func fanoutHTTPPort(_ name: String = "fanout-0") -> UInt16? { lock.withLock { fanouts[name]?.httpPort } }

    /// Starts a replica again with the flags it had (after a kill), and waits for ready.
    func restartFanout(_ name: String = "fanout-0") throws {
        guard let previous = lock.withLock({ fanouts[name] }) else { return }
        previous.process.stop(grace: .seconds(2))
        try launchFanout(name: name, arguments: previous.arguments)
    }

    // MARK: notifiers

    /// Starts a `notifier` on a free port and waits until `/readyz` answers 200.
    @discardableResult
    /// With roles, it connects as the NATS user named `natsUser` (default: the instance's own).
    func startNotifier(_ instance: String, drainSeconds: Double = 0.5, natsUser: String? = nil, extra: [String] = []) throws -> Int {
        let (process, port, _) = try ServerProcess.startService(
            name: instance, executable: BuiltProducts.path("notifier"),
            logURL: logs.url.appendingPathComponent("\(instance)-\(UUID().uuidString.prefix(4)).log"), readyTimeout: .seconds(20)
        ) { port in
            [
                "--instance-id", instance, "--nats-url", natsURL(user: natsUser ?? instance), "--redis-url", redis.url,
                "--listen", "127.0.0.1:\(port)", "--jwt-secret", Self.secret, "--event-loop-threads", "1",
                "--drain-seconds", "\(drainSeconds)", "--partition-count", "\(Self.partitionCount)",
            ] + (natsCA.map { ["--nats-tls-ca", $0] } ?? []) + extra
        }
        lock.withLock { notifiers[instance] = (process, Int(port)) }
        return Int(port)
    }

    /// Starts the fan-out and makes each of `users` a member of every one of `channels`; true
    /// once the fan-out holds all those memberships.
    func startFanout(members users: [String], of channels: [String]) throws -> Bool {
        try startFanout()
        for channel in channels {
            for user in users { try join(user, channel) }
        }
        return eventually(timeout: .seconds(5)) { channels.allSatisfy { self.members(of: $0) == users.count } }
    }

    /// A chat client of `user`, with a token of its own, on the first of `ports` that answers.
    func client(_ user: String, ports: [Int], reconnects: Bool = false) async throws -> ChatClient {
        try ChatClient(user: user, token: try await token(user), ports: ports, reconnects: reconnects)
    }

    /// The fault tests' common start: the fan-out with each of `users` a member of every one of
    /// `channels`, notifiers n1 and n2, alice's client on n1 and bob's on n2. `ready` is true
    /// once the fan-out holds those memberships and routes to both users.
    func aliceOnN1AndBobOnN2(members users: [String] = ["alice", "bob"], of channels: [String], reconnects: Bool = false) async throws -> (alice: ChatClient, bob: ChatClient, ready: Bool) {
        let joined = try startFanout(members: users, of: channels)
        let n1 = try startNotifier("n1")
        let n2 = try startNotifier("n2")
        let alice = try await client("alice", ports: [n1], reconnects: reconnects)
        let bob = try await client("bob", ports: [n2], reconnects: reconnects)
        return (alice, bob, joined && online(["alice", "bob"]))
    }

    /// True once the fan-out routes to every one of `users` (within 5 s).
    func online(_ users: [String]) -> Bool {
        eventually(timeout: .seconds(5)) { users.allSatisfy { self.inspectUser($0)?.online == true } }
    }

    func notifier(_ instance: String) -> ServerProcess? { lock.withLock { notifiers[instance]?.process } }
    func port(_ instance: String) -> Int { lock.withLock { notifiers[instance]!.port } }

    func token(_ user: String) async throws -> String { try await issuer.token(user: user) }

    // MARK: upstream

    /// Publishes a JOINED fact to `CHAT_MEMBERSHIP`, as the membership service would.
    func join(_ user: String, _ channel: String) throws {
        let change = MembershipChange(channelID: channel, userID: user, state: .joined, version: 1)
        _ = try jetStream.publish(Subjects.membership(channel: channel, user: user, partitionCount: Self.partitionCount), payload: change.encoded())
    }

    /// Publishes a message event and returns its stream sequence. A failed publish (no
    /// stream leader for a moment, a paused server) is retried with the same `Nats-Msg-Id`,
    /// so a retry of a stored event is deduplicated rather than stored twice.
    func publishEvent(channel: String, id: String, text: String = "hi", retryFor: Duration = .seconds(20)) throws -> UInt64 {
        let event = ChatEvent(eventID: id, channelID: channel, senderID: "upstream", createdAtMs: Int64(Date().timeIntervalSince1970 * 1000), body: .messageCreated(messageID: id, text: text))
        let subject = Subjects.event(channel: channel, partitionCount: Self.partitionCount)
        let deadline = ContinuousClock.now + retryFor
        while true {
            do {
                return try jetStream.publish(subject, payload: event.encoded(), msgID: id, timeout: .seconds(1)).sequence
            } catch {
                if ContinuousClock.now >= deadline { throw error }
                usleep(50_000)
            }
        }
    }

    // MARK: operator

    /// The fan-out's view of `user` (first replica's answer), or nil if none answered.
    func inspectUser(_ user: String) -> Inspection.User? {
        guard let reply = try? operatorConnection.request(Inspection.userSubject, payload: Array(user.utf8), timeout: .seconds(1)) else { return nil }
        return try? JSONDecoder().decode(Inspection.User.self, from: Data(reply.payload))
    }

    /// Members of `channel` as the fan-out reports them (0 when unknown or no answer).
    func members(of channel: String) -> Int {
        guard let reply = try? operatorConnection.request(Inspection.channelSubject, payload: Array(channel.utf8), timeout: .seconds(1)),
              let answer = try? JSONDecoder().decode(Inspection.Channel.self, from: Data(reply.payload)) else { return 0 }
        return answer.members
    }

    /// Runs `routectl` against this deployment as an operator would; returns its exit status and output.
    func routectl(_ arguments: [String]) throws -> (status: Int32?, output: String) {
        let process = try ServerProcess(
            name: "routectl", executable: BuiltProducts.path("routectl"), arguments: arguments,
            environment: ["SWITCHBOARD_NATS_URL": natsURL(user: "routectl")].merging(natsCA.map { ["SWITCHBOARD_NATS_TLS_CA": $0] } ?? [:]) { $1 },
            logURL: logs.url.appendingPathComponent("routectl-\(UUID().uuidString.prefix(8)).log")
        )
        let status = process.waitForExit(timeout: .seconds(10))
        return (status, process.log())
    }

    /// `routectl user <id> --json`: the instances the user is placed on (empty when offline),
    /// or nil when routectl failed.
    func routectlPlacements(_ user: String) -> Set<String>? {
        guard let result = try? routectl(["user", user, "--json", "--timeout", "1"]), result.status == 0,
              let start = result.output.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(result.output[start...].utf8)) as? [String: Any],
              let replies = object["replies"] as? [[String: Any]] else { return nil }
        var instances = Set<String>()
        for reply in replies {
            for placement in reply["placements"] as? [[String: Any]] ?? [] {
                if let instance = placement["instance"] as? String { instances.insert(instance) }
            }
        }
        return instances
    }

    /// `routectl channel <id> --json`: online members of the channel per the owning replica.
    func routectlOnlineMembers(_ channel: String) -> Int? {
        guard let result = try? routectl(["channel", channel, "--json", "--timeout", "1"]), result.status == 0,
              let start = result.output.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(result.output[start...].utf8)) as? [String: Any],
              let replies = object["replies"] as? [[String: Any]],
              let owner = replies.first(where: { $0["owned"] as? Bool == true }) else { return nil }
        return owner["online_members"] as? Int
    }

    func redisConnection() throws -> RedisConnection { try RedisConnection(url: redis.url, timeout: .seconds(2)) }

    /// Stops redis-server with `SHUTDOWN NOSAVE` (started from the test runner it may not act
    /// on SIGTERM); its data is gone, as after a crash of a cache node.
    func shutDownRedis() {
        if let redis = try? redisConnection() {
            _ = try? redis.command(["SHUTDOWN", "NOSAVE"])
            redis.close()
        }
        _ = redis.process.waitForExit(timeout: .seconds(3))
    }

    /// Every process's log, for failure messages.
    func logsText() -> String {
        var text = ""
        let all = lock.withLock { fanouts.map { ($0.key, $0.value.process) } + notifiers.map { ($0.key, $0.value.process) } }
        for (name, process) in all.sorted(by: { $0.0 < $1.0 }) {
            text += "=== \(name)\n" + String(process.log().suffix(3000)) + "\n"
        }
        return text
    }

    func stop() {
        let (allNotifiers, allFanouts) = lock.withLock { (Array(notifiers.values), Array(fanouts.values)) }
        for notifier in allNotifiers { notifier.process.send(SIGKILL) }
        for fanout in allFanouts { fanout.process.send(SIGKILL) }
        for notifier in allNotifiers { notifier.process.stop(grace: .seconds(1)) }
        for fanout in allFanouts { fanout.process.stop(grace: .seconds(1)) }
        connection.close()
        operatorConnection.close()
        if redis.process.isRunning { shutDownRedis() }
        redis.stop()
        single?.stop()
        cluster?.stop()
        // SWITCHBOARD_KEEP_TEST_LOGS=1 keeps the services' logs for a post-mortem.
        if ProcessInfo.processInfo.environment["SWITCHBOARD_KEEP_TEST_LOGS"] != nil {
            let kept = logs.path + "-kept"
            try? FileManager.default.copyItem(atPath: logs.path, toPath: kept)
            print("[e2e] logs kept in \(kept)")
        }
        logs.remove()
    }
}
