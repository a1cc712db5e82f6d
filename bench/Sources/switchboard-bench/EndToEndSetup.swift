import Foundation
import NotifierDemo
import NotifierService
import RedisClient
import SwitchboardHarness
#if canImport(Glibc)
import Glibc
import SwitchboardContracts
#endif

/// The Switchboard side of `switchboard-bench fanout` that `PipelineEnvironment` does not
/// already start: K release `notifier` processes and the WebSocket clients, one per online
/// user, each with its own JWT; then waits until every client is in Redis presence.
final class EndToEndSetup: @unchecked Sendable {
    let env: PipelineEnvironment
    let workload: PipelineWorkload
    let topology: EndToEndTopology
    let binDirectory: URL
    /// ≥ 32 bytes, fresh per run; the notifiers get it on the command line, the bench signs with it.
    let secret = (0..<48).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! }.map(String.init).joined()
    private(set) var notifiers: [ServerProcess] = []
    private(set) var notifierPorts: [UInt16] = []

    init(env: PipelineEnvironment, workload: PipelineWorkload, topology: EndToEndTopology, binDirectory: URL) {
        self.env = env
        self.workload = workload
        self.topology = topology
        self.binDirectory = binDirectory
    }

    /// Raises the soft open-files limit to the hard one; returns the limit in force.
    static func raiseFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }

    func startNotifiers(threads: Int, timeout: Duration = .seconds(60)) throws {
        let executable = binDirectory.appendingPathComponent("notifier").path
        for index in 0..<workload.shape.instances {
            let port = try LoopbackPort.free()
            let id = PipelineWorkload.instanceID(index)
            let process = try ServerProcess(
                name: id, executable: executable,
                arguments: [
                    "--nats-url", env.natsURL, "--redis-url", env.redisURL, "--instance-id", id,
                    "--listen", "127.0.0.1:\(port)", "--jwt-secret", secret, "--max-connections", "60000",
                    "--heartbeat-seconds", "30", "--partition-count", "\(env.partitionCount)",
                    "--event-loop-threads", "\(threads)", "--log-level", "warning",
                ],
                logURL: env.directory.appendingPathComponent("\(id).log")
            )
            notifiers.append(process)
            notifierPorts.append(port)
        }
        // Started side by side above, waited for one after the other within one deadline.
        let deadline = ContinuousClock.now + timeout
        for (process, port) in zip(notifiers, notifierPorts) {
            try process.waitUntilReady(port: port, timeout: deadline - ContinuousClock.now, poll: .milliseconds(50))
        }
    }

    /// Signs a token per online user, connects them all, waits for every hello and for Redis
    /// presence to list every user on its instance.
    func connectClients(threads: Int, events: Int, concurrency: Int) throws -> EndToEndClientFleet {
        let online = topology.usersByInstance.enumerated().flatMap { instance, users in users.map { (user: $0, instance: instance) } }
            .sorted { $0.user < $1.user }
        let tokens = try Self.blocking { [secret] in
            let issuer = await TokenIssuer(secret: Array(secret.utf8))
            var tokens: [String] = []
            tokens.reserveCapacity(online.count)
            for (user, _) in online { tokens.append(try await issuer.token(user: PipelineWorkload.userID(user), lifetime: .seconds(6 * 3600))) }
            return tokens
        }
        let clients = zip(online, tokens).map { EndToEndClientFleet.Client(user: $0.user, port: Int(notifierPorts[$0.instance]), token: $1) }
        let fleet = EndToEndClientFleet(threads: threads, events: events)
        let (failed, firstError) = fleet.connect(clients, concurrency: concurrency)
        guard failed == 0 else {
            fleet.shutdown()
            throw EndToEndError.setup("\(failed) of \(clients.count) WebSocket clients did not connect; first error: \(firstError ?? "?")")
        }
        // Hellos and presence: the fan-out must see every user before it plans.
        let redis = try RedisConnection(url: env.redisURL)
        defer { redis.close() }
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let hellos = fleet.counters.hellos.load(ordering: .relaxed)
            var registered = 0
            for index in 0..<workload.shape.instances {
                registered += Int((try? redis.command(["HLEN", PresenceKeys.users(instance: PipelineWorkload.instanceID(index))]))?.integer ?? 0)
            }
            if hellos >= clients.count && registered >= clients.count { break }
            guard ContinuousClock.now < deadline else {
                fleet.shutdown()
                throw EndToEndError.setup("after 60 s: \(hellos) hellos and \(registered) users in presence of \(clients.count) clients")
            }
            usleep(50_000)
        }
        return fleet
    }

    /// Runs `body` on a task and waits for it (the bench's commands are synchronous).
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Task {
            do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try box.get()
    }

    private final class ResultBox<T: Sendable>: @unchecked Sendable {
        private var result: Result<T, any Error>?
        private let lock = NSLock()
        func set(_ value: Result<T, any Error>) { lock.lock(); result = value; lock.unlock() }
        func get() throws -> T {
            lock.lock(); defer { lock.unlock() }
            return try result!.get()
        }
    }

    var notifierPIDs: [Int32] { notifiers.map(\.pid) }

    func stop() {
        for notifier in notifiers { notifier.stop(grace: .seconds(8)) }
    }
}
