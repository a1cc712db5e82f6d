import Foundation
import NATSClient
import NotifierDemo
import RedisClient
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto

/// Switchboard as a deployment runs it, on loopback: `nats-server -js` (the binary named by
/// `SWITCHBOARD_NATS_SERVER`, default `nats-server` from PATH), `redis-server`, one release
/// `fanout` owning every partition and `notifiers` release `notifier`s; streams applied, every
/// user a member of its room and of the broadcast channel before the fan-out starts.
final class SwitchboardSystem: PeerSystem {
    let name = "Switchboard"
    let versions: String
    private let directory: TemporaryDirectory
    private let nats: ServerProcess
    private let redis: RedisServerFixture
    private var fanout: ServerProcess?
    private var notifiers: [ServerProcess] = []
    private var notifierPorts: [UInt16] = []
    private let connection: NATSConnection
    private let tokens: [String]
    private(set) var publisher: any PeerPublisher
    /// `--nats-tls-ca` for the services when nats-server runs TLS.
    private let natsTLSArguments: [String]

    struct Options {
        var sockets: Int
        var roomSize: Int
        var notifiers: Int
        var notifierThreads: Int?
        /// Clients reach nats-server over TLS.
        var natsTLS = false
        var textLength: Int
        var streamsDir: String
        var binDirectory: URL
    }

    init(_ options: Options) throws {
        directory = try TemporaryDirectory(prefix: "switchboard-bench-peer")
        let natsExecutable = ProcessInfo.processInfo.environment["SWITCHBOARD_NATS_SERVER"] ?? "nats-server"
        let directory = directory
        let certificates = options.natsTLS ? try TestCertificates(in: directory.url) : nil
        let tlsArguments = certificates.map { ["--tls", "--tlscert", $0.certFile, "--tlskey", $0.keyFile] } ?? []
        let started = try ServerProcess.startOnFreePort { port in
            try ServerProcess(name: "nats-server", executable: natsExecutable,
                              arguments: ["-js", "-a", "127.0.0.1", "-p", "\(port)", "-sd", directory.url.appendingPathComponent("js").path] + tlsArguments,
                              logURL: directory.url.appendingPathComponent("nats.log"))
        }
        nats = started.process
        let natsPort = started.port
        do {
            redis = try RedisServerFixture()
        } catch {
            started.process.stop()
            throw error
        }
        let natsURL = "nats://127.0.0.1:\(natsPort)"
        natsTLSArguments = certificates.map { ["--nats-tls-ca", $0.caFile] } ?? []
        connection = try NATSConnection(options: .init(url: natsURL, name: "peer-publisher", tls: certificates.map { .init(caFile: $0.caFile) }))
        let jetStream = try connection.jetStream(timeout: .seconds(10), maxPendingAsyncPublishes: 16_384)
        let definitions = try StreamDefinitions(directory: options.streamsDir)
        _ = try definitions.apply(subjectTransforms: jetStream.serverSupportsStreamSubjectTransforms()) { try jetStream.applyStream(configJSON: $0) }
        publisher = JetStreamPeerPublisher(jetStream: jetStream, partitionCount: definitions.partitionCount, textLength: options.textLength)

        let natsVersion = PeerShell.output(natsExecutable, ["--version"])?.text ?? "nats-server ?"
        let redisVersion = PeerShell.output("redis-server", ["--version"])?.text.split(separator: " ").first { $0.hasPrefix("v=") }.map { "redis-server \($0.dropFirst(2))" } ?? "redis-server ?"
        versions = "\(natsVersion) (\(natsExecutable))\(options.natsTLS ? " on TLS" : ""), \(redisVersion), 1 fanout + \(options.notifiers) notifiers (\(options.notifierThreads.map { "\($0) event-loop thread(s) each" } ?? "one event loop per core each")) from \(options.binDirectory.path)"

        let secret = (0..<48).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! }.map(String.init).joined()
        let users = options.sockets
        tokens = try EndToEndSetup.blocking {
            let issuer = await TokenIssuer(secret: Array(secret.utf8))
            var tokens: [String] = []
            tokens.reserveCapacity(users)
            for socket in 0..<users { tokens.append(try await issuer.token(user: PeerWorkload.userID(socket), lifetime: .seconds(6 * 3600))) }
            return tokens
        }
        do {
            try publishMemberships(jetStream: jetStream, sockets: options.sockets, roomSize: options.roomSize, partitionCount: definitions.partitionCount)
            try startFanout(options, natsURL: natsURL, partitionCount: definitions.partitionCount)
            try startNotifiers(options, natsURL: natsURL, secret: secret, partitionCount: definitions.partitionCount)
        } catch {
            stop()
            throw error
        }
    }

    /// Socket i's user is in room i / roomSize and in the broadcast channel.
    private func publishMemberships(jetStream: JetStream, sockets: Int, roomSize: Int, partitionCount: Int) throws {
        let rooms = PeerWorkload(kind: .rooms(size: roomSize), sockets: sockets)
        let broadcast = PeerWorkload(kind: .broadcast, sockets: sockets)
        for socket in 0..<sockets {
            let user = PeerWorkload.userID(socket)
            for channel in [rooms.channelID(rooms.channel(ofSocket: socket)), broadcast.channelID(0)] {
                let change = MembershipChange(channelID: channel, userID: user, state: .joined, version: 1)
                try jetStream.publishAsync(Subjects.membership(channel: channel, user: user, partitionCount: partitionCount), payload: change.encoded())
            }
        }
        try jetStream.publishAsyncComplete(timeout: .seconds(60))
    }

    private func startFanout(_ options: Options, natsURL: String, partitionCount: Int) throws {
        fanout = try ServerProcess.startService(
            name: "fanout", executable: options.binDirectory.appendingPathComponent("fanout").path,
            logURL: directory.url.appendingPathComponent("fanout.log"), readyTimeout: .seconds(120)
        ) { port in
            [
                "--nats-url", natsURL, "--redis-url", redis.url, "--partition-count", "\(partitionCount)",
                "--partitions", "0-\(partitionCount - 1)", "--replica-id", "peer-fanout",
                "--http", "127.0.0.1:\(port)", "--streams-dir", options.streamsDir,
            ] + natsTLSArguments
        }.process
    }

    private func startNotifiers(_ options: Options, natsURL: String, secret: String, partitionCount: Int) throws {
        for index in 0..<options.notifiers {
            let id = "peer-notifier-\(index)"
            let started = try ServerProcess.startService(
                name: id, executable: options.binDirectory.appendingPathComponent("notifier").path,
                logURL: directory.url.appendingPathComponent("\(id).log"), readyTimeout: .seconds(60)
            ) { [redis] port in
                [
                    "--nats-url", natsURL, "--redis-url", redis.url, "--instance-id", id,
                    "--listen", "127.0.0.1:\(port)", "--jwt-secret", secret, "--max-connections", "\(options.sockets + 1000)",
                    // The load client sends nothing; a long heartbeat keeps its sockets open.
                    "--heartbeat-seconds", "3600", "--partition-count", "\(partitionCount)", "--log-level", "warning",
                ] + natsTLSArguments + (options.notifierThreads.map { ["--event-loop-threads", "\($0)"] } ?? [])
            }
            notifiers.append(started.process)
            notifierPorts.append(started.port)
        }
    }

    func serverProcesses() -> [PeerServerProcess] {
        [PeerServerProcess(name: "nats-server", pid: nats.pid), PeerServerProcess(name: "redis-server", pid: redis.process.pid)]
            + (fanout.map { [PeerServerProcess(name: "fanout", pid: $0.pid)] } ?? [])
            + notifiers.map { PeerServerProcess(name: $0.name.replacingOccurrences(of: "peer-", with: ""), pid: $0.pid) }
    }

    /// The same sockets serve both workloads: each user is in its room and in the broadcast
    /// channel; users alternate between the notifiers.
    func targets(for workload: PeerWorkload) throws -> [PeerLoadClient.Target] {
        guard workload.sockets <= tokens.count else { throw PeerBenchError.setup("\(workload.sockets) sockets but \(tokens.count) tokens") }
        return (0..<workload.sockets).map { PeerLoadClient.Target(port: notifierPorts[$0 % notifierPorts.count], path: "/ws?token=\(tokens[$0])") }
    }

    /// Polls Redis until every notifier's presence hash holds its users.
    func waitSubscribed(sockets: Int, timeout: Duration) throws {
        let client = try RedisConnection(url: redis.url)
        defer { client.close() }
        let deadline = ContinuousClock.now + timeout
        while true {
            var registered = 0
            for index in notifiers.indices {
                registered += Int((try? client.command(["HLEN", PresenceKeys.users(instance: "peer-notifier-\(index)")]))?.integer ?? 0)
            }
            if registered >= sockets { return }
            guard ContinuousClock.now < deadline else { throw PeerBenchError.setup("\(registered) of \(sockets) users in Redis presence after \(timeout)") }
            usleep(50_000)
        }
    }

    func stop() {
        for notifier in notifiers { notifier.stop(grace: .seconds(8)) }
        fanout?.stop(grace: .seconds(10))
        connection.close()
        redis.stop()
        nats.stop()
        directory.remove()
    }
}
