import Foundation
import RedisClient
import SwitchboardHarness
#if canImport(Glibc)
import Glibc
import SwitchboardContracts
#endif

/// One `notifier` process started by `switchboard-bench notifier` against the bench's own
/// nats-server and redis-server, with what the bench reads from outside: resident memory,
/// open file descriptors, its `/metrics` counters and its presence hash in Redis.
final class NotifierInstance {
    let instanceID: String
    let port: UInt16
    let process: ServerProcess
    private let redisURL: String

    init(executable: String, instanceID: String, env: PipelineEnvironment, secretFile: URL, maxConnections: Int,
         eventLoopThreads: Int?) throws {
        self.instanceID = instanceID
        redisURL = env.redisURL
        port = try LoopbackPort.free()
        var arguments = [
            "--nats-url", env.natsURL, "--redis-url", env.redisURL, "--instance-id", instanceID,
            "--listen", "127.0.0.1:\(port)", "--jwt-secret-file", secretFile.path,
            "--max-connections", "\(maxConnections)", "--partition-count", "\(env.partitionCount)",
        ]
        if let eventLoopThreads { arguments += ["--event-loop-threads", "\(eventLoopThreads)"] }
        process = try ServerProcess(name: "notifier", executable: executable, arguments: arguments,
                                    logURL: env.directory.appendingPathComponent("notifier-\(instanceID).log"))
    }

    /// Waits for `/readyz` 200 (NATS inbox subscribed, listener up), bounded.
    func waitReady(timeout: Duration = .seconds(30)) throws {
        try process.waitUntilReady(port: port, timeout: timeout, poll: .milliseconds(50))
    }

    /// VmRSS of the notifier, bytes.
    var residentBytes: Int { Machine.residentBytes(pid: process.pid) }

    /// CPU seconds the notifier has used so far.
    var cpuSeconds: Double { Machine.cpuSeconds(pid: process.pid) }

    /// File descriptors the notifier has open now.
    var openFileDescriptors: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.pid)/fd").count) ?? -1
    }

    /// The notifier's soft `RLIMIT_NOFILE` (inherited from the bench).
    var fileLimit: Int { FileLimits.soft(pid: process.pid) ?? -1 }

    /// Users in `presence:<instance>`.
    func presenceCount() throws -> Int {
        let redis = try RedisConnection(url: redisURL)
        defer { redis.close() }
        return Int(try redis.command(["HLEN", PresenceKeys.users(instance: instanceID)]).integer ?? -1)
    }

    /// Polls until `presence:<instance>` holds `users` users (the registrar writes them
    /// asynchronously after each first socket), bounded.
    func waitPresence(users: Int, timeout: Duration = .seconds(60)) throws {
        let deadline = ContinuousClock.now + timeout
        var last = -1
        while ContinuousClock.now < deadline {
            last = try presenceCount()
            if last == users { return }
            usleep(100_000)
        }
        throw PipelineError.timeout("\(PresenceKeys.users(instance: instanceID)) holds \(last) users, expected \(users)")
    }

    /// `user → slot` as the notifier registered it (what a fan-out reads).
    func presenceSlots() throws -> [String: UInt32] {
        let redis = try RedisConnection(url: redisURL)
        defer { redis.close() }
        var slots: [String: UInt32] = [:]
        var cursor: UInt64 = 0
        repeat {
            let page = try redis.hscan(PresenceKeys.users(instance: instanceID), cursor: cursor, count: 1000)
            for (user, slot) in page.pairs { slots[user] = UInt32(slot) }
            cursor = page.next
        } while cursor != 0
        return slots
    }

    /// The notifier's `/metrics`, one value per series (`name{labels}` as printed).
    func metrics() throws -> NotifierMetricsSnapshot {
        guard let body = HTTPProbe.body(port: port, path: "/metrics") else {
            throw PipelineError.setup("GET /metrics on the notifier failed")
        }
        return NotifierMetricsSnapshot(text: body)
    }

    func stop() { process.stop(grace: .seconds(10)) }
}

/// One scrape of the Prometheus text exposition.
struct NotifierMetricsSnapshot {
    private(set) var series: [String: Double] = [:]

    init(text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            series[String(line[..<space])] = value
        }
    }

    /// The sum of the series of metric `name` whose labels contain `label` (all when nil).
    func value(_ name: String, label: String? = nil) -> Double {
        series.reduce(0) { sum, entry in
            let (key, value) = entry
            let matchesName = key == name || key.hasPrefix(name + "{")
            let matchesLabel = label.map { key.contains($0) } ?? true
            return matchesName && matchesLabel ? sum + value : sum
        }
    }
}

/// `RLIMIT_NOFILE` of this process and of children (which inherit it).
enum FileLimits {
    /// This process's (soft, hard) limit.
    static var current: (soft: Int, hard: Int) {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return (Int(limit.rlim_cur), Int(limit.rlim_max))
    }

    /// Tries to raise this process's soft and hard limit to `wanted` (children started
    /// afterwards inherit it). Raising the hard limit needs CAP_SYS_RESOURCE. Returns nil on
    /// success, else why not.
    static func raise(to wanted: Int) -> String? {
        let (soft, hard) = current
        if soft >= wanted { return nil }
        var limit = rlimit(rlim_cur: rlim_t(wanted), rlim_max: rlim_t(max(hard, wanted)))
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { return nil }
        let reason = String(cString: strerror(errno))
        // At least use the whole hard limit.
        limit = rlimit(rlim_cur: rlim_t(hard), rlim_max: rlim_t(hard))
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return "setrlimit(RLIMIT_NOFILE, \(wanted)) failed: \(reason) (raising the hard limit needs CAP_SYS_RESOURCE)"
    }

    /// File descriptors this process has open now.
    static var openNow: Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }

    /// The soft "Max open files" of process `pid` (from /proc/<pid>/limits).
    static func soft(pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) else { return nil }
        return line.dropFirst("Max open files".count).split(separator: " ").first.flatMap { Int($0) }
    }
}
