import ArgumentParser
import FanoutService
import Foundation
import NATSClient
import RedisClient
import RoutingCore
import RoutingWorkloads
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `--store` remembers of the memberships it holds, so a later run with the same dataset
/// skips the load (and reports the original load's numbers).
struct StoredDataset: Codable {
    static let fileName = "switchboard-dataset.json"

    var datasetLine: String
    var memberships: Int
    var membershipSeconds: Double
    var maxInFlight: Int
    var date: String

    /// The record in `store` when it describes `datasetLine` and the stream still holds it all.
    static func matching(_ datasetLine: String, memberships: Int, in store: URL, jetStream: JetStream) throws -> StoredDataset? {
        guard let data = try? Data(contentsOf: store.appendingPathComponent(fileName)),
              let record = try? JSONDecoder().decode(StoredDataset.self, from: data),
              record.datasetLine == datasetLine, record.memberships == memberships else { return nil }
        return try jetStream.streamState(StreamNames.membership).messages == UInt64(memberships) ? record : nil
    }

    func write(to store: URL) throws {
        try JSONEncoder().encode(self).write(to: store.appendingPathComponent(Self.fileName))
    }
}

/// Writes the dataset where the fan-out reads it: memberships into `CHAT_MEMBERSHIP` as upstream
/// publishes them, presence into Redis as notifiers write it.
struct ColdStartLoader {
    let env: PipelineEnvironment
    let dataset: Dataset
    let channelIDs: [String]
    let channelPartitions: [Int]

    var onlineCount: Int { min(dataset.shape.online, dataset.shape.users) }

    /// JetStream async publish of every membership (at most `maxInFlight` unacked), with a
    /// progress line on stderr; throws when the load takes (or is projected to take) longer
    /// than `maxSeconds`.
    func loadMemberships(maxInFlight: Int, maxSeconds: Double) throws {
        let jetStream = try env.publisher.jetStream(timeout: .seconds(30), maxPendingAsyncPublishes: maxInFlight)
        let prefixes = zip(channelIDs, channelPartitions).map { "chat.membership.\($1).\($0)." }
        let total = dataset.membershipCount
        let progress = ColdStartProgress(label: "memberships", total: total)
        var published = 0
        try dataset.forEachMembership { channel, user in
            let userID = Dataset.userID(user)
            let change = MembershipChange(channelID: channelIDs[channel], userID: userID, state: .joined, version: 1)
            try jetStream.publishAsync(prefixes[channel] + userID, payload: change.encoded())
            published += 1
            if published % 1_000_000 == 0 {
                // Surfaces failed publishes early instead of after millions more.
                try jetStream.publishAsyncComplete(timeout: .seconds(120))
            }
            if published & 0x3FFF == 0 {
                progress.update(published)
                let elapsed = progress.elapsed
                if elapsed > maxSeconds || (elapsed > 30 && elapsed * Double(total) / Double(published) > maxSeconds * 1.1) {
                    throw PipelineError.timeout(String(format: "loading %d memberships would take about %.0f s (%.0f/s), more than --max-load-seconds %.0f",
                                                       total, elapsed * Double(total) / Double(published), Double(published) / elapsed, maxSeconds))
                }
            }
        }
        try jetStream.publishAsyncComplete(timeout: .seconds(300))
        progress.finish(published)
    }

    /// Per instance: `SET epoch:<i> 1`, `HSET presence:<i> <user> <slot>` (pipelined), then
    /// `ZADD instances <now ms> <i>`; returns the heartbeat that keeps the instances alive.
    func loadPresence() throws -> ColdStartHeartbeat {
        let instanceIDs = (0..<dataset.shape.instances).map(Dataset.instanceID)
        var perInstance = [[(String, String)]](repeating: [], count: instanceIDs.count)
        dataset.forEachOnlineUser { user, instance, slot in perInstance[instance].append((Dataset.userID(user), "\(slot)")) }
        let redis = try RedisConnection(url: env.redisURL, timeout: .seconds(10))
        defer { redis.close() }
        let progress = ColdStartProgress(label: "presence", total: onlineCount)
        var written = 0
        for (index, instance) in instanceIDs.enumerated() {
            var commands: [[String]] = [["SET", PresenceKeys.epoch(instance: instance), "1"]]
            var start = 0
            while start < perInstance[index].count {
                let end = min(start + 500, perInstance[index].count)
                var hset = ["HSET", PresenceKeys.users(instance: instance)]
                for (user, slot) in perInstance[index][start..<end] { hset += [user, slot] }
                commands.append(hset)
                start = end
                if commands.count >= 64 || start == perInstance[index].count {
                    try Self.checked(redis.pipeline(commands))
                    commands = []
                }
            }
            try Self.checked(redis.pipeline(commands + [["ZADD", PresenceKeys.instances, "\(Self.nowMs())", instance]]))
            written += perInstance[index].count
            progress.update(written)
        }
        progress.finish(written)
        return try ColdStartHeartbeat(redisURL: env.redisURL, instances: instanceIDs)
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    private static func checked(_ replies: [RedisReply]) throws {
        for reply in replies {
            if case .error(let text) = reply { throw PipelineError.setup("Redis: \(text)") }
        }
    }
}

/// `ZADD instances <now ms> <instance>` for every instance every 2 s, as notifiers heartbeat,
/// on its own thread and connection until `stop()` (bounded).
final class ColdStartHeartbeat: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    private var stopped = false

    init(redisURL: String, instances: [String]) throws {
        let redis = try RedisConnection(url: redisURL, timeout: .seconds(2))
        let thread = Thread { [self] in
            var nextBeat = ContinuousClock.now + .seconds(2)
            while !stopFlag.load(ordering: .relaxed) {
                if ContinuousClock.now >= nextBeat {
                    let now = "\(ColdStartLoader.nowMs())"
                    _ = try? redis.pipeline(instances.map { ["ZADD", PresenceKeys.instances, now, $0] })
                    nextBeat = ContinuousClock.now + .seconds(2)
                }
                usleep(100_000)
            }
            redis.close()
            done.store(true, ordering: .relaxed)
        }
        thread.name = "bench-heartbeat"
        thread.start()
    }

    func stop() {
        if stopped { return }
        stopped = true
        stopFlag.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(5)
        while !done.load(ordering: .relaxed) && ContinuousClock.now < deadline { usleep(20_000) }
    }

    deinit { stop() }
}

/// A progress line on stderr: percent, count, rate. Redrawn in place on a terminal, else a
/// line every 5 s.
final class ColdStartProgress {
    let label: String
    let total: Int
    private let started = ContinuousClock.now
    private var lastPrint = ContinuousClock.now
    private let terminal = isatty(2) != 0

    init(label: String, total: Int) {
        self.label = label
        self.total = total
    }

    var elapsed: Double { (ContinuousClock.now - started).seconds }

    func update(_ done: Int) {
        let now = ContinuousClock.now
        guard now - lastPrint >= (terminal ? .milliseconds(500) : .seconds(5)) else { return }
        lastPrint = now
        write(done, end: terminal ? "\r" : "\n")
    }

    func finish(_ done: Int) { write(done, end: "\n") }

    private func write(_ done: Int, end: String) {
        let seconds = max(elapsed, 1e-9)
        let rate = Double(done) / seconds
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "%@: %5.1f %% (%d / %d), %.0f/s, %.0f s elapsed, eta %.0f s   %@",
                          label, 100 * Double(done) / Double(max(1, total)), done, total, rate, seconds, eta, end)
        FileHandle.standardError.write(Data(line.utf8))
    }
}
