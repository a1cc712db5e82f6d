import Foundation
import Logging
import RedisClient
import SwitchboardContracts
import SwitchboardProto

/// Publishes this instance's presence to Redis (DESIGN: Presence):
///
/// - start: `epoch = INCR epoch:<instance>`; the hash `presence:<instance>` is rewritten from
///   the local table (empty at start), and a heartbeat `ZADD instances <now ms> <instance>`
///   goes out every `heartbeat`;
/// - a user's first socket: `HSET presence:<instance> <user> <slot>` and an ONLINE
///   `PresenceDelta` on the pub/sub channel `presence`; the last socket: `HDEL` and OFFLINE;
/// - Redis outage: sockets keep being served; operations that failed or were queued are
///   dropped, and once Redis answers again the whole local table is re-registered (`DEL` the
///   hash, `HSET` every user, an ONLINE delta each). The epoch stays the process's own; if
///   Redis lost `epoch:<instance>` it is written back;
/// - drain: `PUBLISH` INSTANCE_DOWN, `DEL` the hash, `ZREM instances`.
///
/// Redis calls block, so they all run on one dedicated thread, in order, never on an
/// event loop. Callers only enqueue (under a lock, O(1)); the queue is bounded by
/// `queueLimit`, past which it is dropped and replaced by a full re-registration.
final class PresenceRegistrar: @unchecked Sendable {
    enum Operation {
        case online(user: String, slot: UInt32)
        case offline(user: String, slot: UInt32)
    }

    let instanceID: String
    private let redisURL: String
    private let heartbeat: Duration
    private let queueLimit: Int
    private let commandTimeout: Duration
    private let snapshot: @Sendable () -> [(userID: String, slot: UInt32)]
    private let metrics: NotifierMetrics
    private let logger: Logger
    private var hashKey: String { PresenceKeys.users(instance: instanceID) }
    private var epochKey: String { PresenceKeys.epoch(instance: instanceID) }

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [Operation] = []
    private var overflowed = false
    private var stopRequested = false
    private var deregisterOnStop = true
    private var finished: CheckedContinuation<Void, Never>?
    private var hasFinished = false
    private var currentEpoch: UInt64 = 0
    private var connected = false

    init(
        instanceID: String, redisURL: String, heartbeat: Duration, queueLimit: Int, commandTimeout: Duration = .seconds(2),
        metrics: NotifierMetrics, logger: Logger, snapshot: @escaping @Sendable () -> [(userID: String, slot: UInt32)]
    ) {
        self.instanceID = instanceID
        self.redisURL = redisURL
        self.heartbeat = heartbeat
        self.queueLimit = queueLimit
        self.commandTimeout = commandTimeout
        self.metrics = metrics
        self.logger = logger
        self.snapshot = snapshot
    }

    /// This process's epoch (0 until Redis first answered).
    var epoch: UInt64 { condition.locked { currentEpoch } }
    /// Whether the last Redis operation succeeded.
    var isConnected: Bool { condition.locked { connected } }

    func start() {
        let thread = Thread { [self] in
            run()
        }
        thread.name = "presence-registrar"
        thread.start()
    }

    func enqueue(_ operation: Operation) {
        condition.locked {
            guard !stopRequested else { return }
            if queue.count >= queueLimit {
                queue.removeAll()
                overflowed = true
            } else {
                queue.append(operation)
            }
            condition.signal()
        }
    }

    /// Stops the worker after it has (if `deregister`) announced INSTANCE_DOWN and removed
    /// this instance's keys; returns when the worker has exited.
    func stop(deregister: Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if hasFinished {
                condition.unlock()
                continuation.resume()
                return
            }
            finished = continuation
            stopRequested = true
            deregisterOnStop = deregister
            condition.signal()
            condition.unlock()
        }
    }

    // MARK: Worker thread

    private func run() {
        var redis: RedisConnection?
        var needsFullSync = true
        var nextHeartbeat = ContinuousClock.now
        var nextConnectAttempt = ContinuousClock.now
        var loggedOutage = false

        while true {
            condition.lock()
            while queue.isEmpty && !overflowed && !stopRequested {
                let wake = redis == nil ? nextConnectAttempt : nextHeartbeat
                if ContinuousClock.now >= wake { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: Self.seconds(wake - ContinuousClock.now)))
            }
            var operations = queue
            queue.removeAll()
            if overflowed {
                overflowed = false
                needsFullSync = true
            }
            let stopping = stopRequested
            let deregister = deregisterOnStop
            condition.unlock()

            if stopping {
                if deregister { deregisterInstance(redis) }
                redis?.close()
                condition.locked {
                    hasFinished = true
                    connected = false
                    finished?.resume()
                    finished = nil
                }
                return
            }

            if redis == nil {
                // Whatever was queued is superseded by the full sync after reconnecting.
                needsFullSync = true
                guard ContinuousClock.now >= nextConnectAttempt else { continue }
                do {
                    redis = try connect()
                    loggedOutage = false
                } catch {
                    metrics.presenceErrors.increment()
                    if !loggedOutage {
                        logger.warning("presence: Redis unreachable; serving sockets, will re-register when it answers", metadata: ["error": "\(error)"])
                        loggedOutage = true
                    }
                    nextConnectAttempt = ContinuousClock.now + .milliseconds(500)
                    continue
                }
            }
            guard let connection = redis else { continue }
            do {
                if needsFullSync {
                    operations.removeAll()
                    try fullSync(connection)
                    needsFullSync = false
                    nextHeartbeat = ContinuousClock.now + heartbeat
                }
                for operation in operations { try apply(operation, connection) }
                if ContinuousClock.now >= nextHeartbeat {
                    try beat(connection)
                    nextHeartbeat = ContinuousClock.now + heartbeat
                }
                condition.locked { connected = true }
            } catch {
                metrics.presenceErrors.increment()
                logger.warning("presence: Redis operation failed; will re-register", metadata: ["error": "\(error)"])
                connection.close()
                redis = nil
                needsFullSync = true
                loggedOutage = true
                condition.locked { connected = false }
                nextConnectAttempt = ContinuousClock.now + .milliseconds(500)
            }
        }
    }

    private func connect() throws -> RedisConnection {
        let redis = try RedisConnection(url: redisURL, timeout: commandTimeout)
        let known = condition.locked { currentEpoch }
        if known == 0 {
            let epoch = UInt64(max(1, try redis.incr(epochKey)))
            condition.locked { currentEpoch = epoch }
            logger.info("presence: registered", metadata: ["instance": "\(instanceID)", "epoch": "\(epoch)"])
        } else {
            // Keep this process's epoch; put it back if Redis lost it (restart without data).
            let stored = try redis.command(["GET", epochKey]).text.flatMap { UInt64($0) } ?? 0
            if stored < known { _ = try redis.command(["SET", epochKey, String(known)]) }
        }
        return redis
    }

    /// Rewrites the hash from the local table and announces every user (after start, an
    /// outage, or a queue overflow).
    private func fullSync(_ redis: RedisConnection) throws {
        let epoch = condition.locked { currentEpoch }
        let users = snapshot()
        _ = try redis.command(["DEL", hashKey])
        var index = 0
        while index < users.count {
            let chunk = users[index..<min(index + 1000, users.count)]
            _ = try redis.hset(hashKey, chunk.map { ($0.userID, String($0.slot)) })
            index += chunk.count
        }
        try beat(redis)
        for user in users {
            let delta = PresenceDelta(instanceID: instanceID, epoch: epoch, userID: user.userID, slot: user.slot, state: .online)
            _ = try redis.publish(PresenceKeys.channel, delta.encoded())
        }
        metrics.presenceResyncs.increment()
        logger.info("presence: local users registered", metadata: ["users": "\(users.count)", "epoch": "\(epoch)"])
    }

    private func apply(_ operation: Operation, _ redis: RedisConnection) throws {
        let epoch = condition.locked { currentEpoch }
        switch operation {
        case .online(let user, let slot):
            _ = try redis.hset(hashKey, [(user, String(slot))])
            _ = try redis.publish(PresenceKeys.channel, PresenceDelta(instanceID: instanceID, epoch: epoch, userID: user, slot: slot, state: .online).encoded())
        case .offline(let user, let slot):
            _ = try redis.hdel(hashKey, [user])
            _ = try redis.publish(PresenceKeys.channel, PresenceDelta(instanceID: instanceID, epoch: epoch, userID: user, slot: slot, state: .offline).encoded())
        }
    }

    private func beat(_ redis: RedisConnection) throws {
        _ = try redis.zadd(PresenceKeys.instances, score: Double(Self.nowMilliseconds()), member: instanceID)
    }

    private func deregisterInstance(_ existing: RedisConnection?) {
        let epoch = condition.locked { currentEpoch }
        do {
            let redis = try existing ?? RedisConnection(url: redisURL, timeout: commandTimeout)
            defer { if existing == nil { redis.close() } }
            if epoch != 0 {
                _ = try redis.publish(PresenceKeys.channel, PresenceDelta(instanceID: instanceID, epoch: epoch, userID: "", slot: 0, state: .instanceDown).encoded())
            }
            _ = try redis.command(["DEL", hashKey])
            _ = try redis.zrem(PresenceKeys.instances, member: instanceID)
            logger.info("presence: deregistered", metadata: ["instance": "\(instanceID)", "epoch": "\(epoch)"])
        } catch {
            metrics.presenceErrors.increment()
            logger.warning("presence: could not deregister; the fan-out will expire this instance by heartbeat", metadata: ["error": "\(error)"])
        }
    }

    static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func seconds(_ duration: Duration) -> TimeInterval {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension NSCondition {
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
