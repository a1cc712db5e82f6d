import Foundation
import Logging
import NIOPosix
import RedisClient
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardProto
import Synchronization

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
/// Redis calls block, so each round of them runs on the process's one blocking executor
/// (`NIOThreadPool.singleton`), in order, never on an event loop or the cooperative pool.
/// Callers only enqueue (under a lock, O(1)); the queue is bounded by `queueLimit`, past
/// which it is dropped and replaced by a full re-registration.
final class PresenceRegistrar: Service, Sendable {
    enum Operation: Sendable {
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

    /// What callers and the Redis rounds share.
    private struct Shared {
        var queue: [Operation] = []
        var overflowed = false
        var stopped = false
        var epoch: UInt64 = 0
        var connected = false
    }

    private let shared = Mutex(Shared())
    private let wakeup = Wakeup()

    /// The Redis link between rounds: owned by `run()`, handed to each round on the pool.
    private struct Link: Sendable {
        var redis: RedisConnection?
        var needsFullSync = true
        var nextHeartbeat = ContinuousClock.now
        var nextConnectAttempt = ContinuousClock.now
        var loggedOutage = false
        var nextWake: ContinuousClock.Instant { redis == nil ? nextConnectAttempt : nextHeartbeat }
    }

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
    var epoch: UInt64 { shared.withLock { $0.epoch } }
    /// Whether the last Redis operation succeeded.
    var isConnected: Bool { shared.withLock { $0.connected } }

    func enqueue(_ operation: Operation) {
        let accepted = shared.withLock { shared -> Bool in
            guard !shared.stopped else { return false }
            if shared.queue.count >= queueLimit {
                shared.queue.removeAll()
                shared.overflowed = true
            } else {
                shared.queue.append(operation)
            }
            return true
        }
        if accepted { wakeup.signal() }
    }

    /// Registers this instance, then applies changes and beats until graceful shutdown; then
    /// announces INSTANCE_DOWN and removes this instance's keys.
    func run() async {
        var link = Link()
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let (operations, overflowed) = shared.withLock { shared in
                    defer {
                        shared.queue.removeAll()
                        shared.overflowed = false
                    }
                    return (shared.queue, shared.overflowed)
                }
                let current = link
                do {
                    link = try await NIOThreadPool.singleton.runIfActive { [self] in
                        var link = current
                        round(&link, operations: operations, overflowed: overflowed)
                        return link
                    }
                } catch {
                    break  // the pool is shutting down with the process
                }
                await wakeup.wait(until: link.nextWake)
            }
        } onGracefulShutdown: { [wakeup] in
            wakeup.signal()
        }
        shared.withLock { shared in
            shared.stopped = true
            shared.queue.removeAll()
        }
        let redis = link.redis
        _ = try? await NIOThreadPool.singleton.runIfActive { [self] in
            deregisterInstance(redis)
            redis?.close()
        }
        shared.withLock { $0.connected = false }
    }

    // MARK: Redis rounds (blocking, on the pool)

    private func round(_ link: inout Link, operations: [Operation], overflowed: Bool) {
        var operations = operations
        if overflowed { link.needsFullSync = true }
        if link.redis == nil {
            // Whatever was queued is superseded by the full sync after reconnecting.
            link.needsFullSync = true
            guard ContinuousClock.now >= link.nextConnectAttempt else { return }
            do {
                link.redis = try connect()
                link.loggedOutage = false
            } catch {
                metrics.presenceErrors.increment()
                if !link.loggedOutage {
                    logger.warning("presence: Redis unreachable; serving sockets, will re-register when it answers", metadata: ["error": "\(error)"])
                    link.loggedOutage = true
                }
                link.nextConnectAttempt = ContinuousClock.now + .milliseconds(500)
                return
            }
        }
        guard let connection = link.redis else { return }
        do {
            if link.needsFullSync {
                operations.removeAll()
                try fullSync(connection)
                link.needsFullSync = false
                link.nextHeartbeat = ContinuousClock.now + heartbeat
            }
            for operation in operations { try apply(operation, connection) }
            if ContinuousClock.now >= link.nextHeartbeat {
                try beat(connection)
                link.nextHeartbeat = ContinuousClock.now + heartbeat
            }
            shared.withLock { $0.connected = true }
        } catch {
            metrics.presenceErrors.increment()
            logger.warning("presence: Redis operation failed; will re-register", metadata: ["error": "\(error)"])
            connection.close()
            link.redis = nil
            link.needsFullSync = true
            link.loggedOutage = true
            shared.withLock { $0.connected = false }
            link.nextConnectAttempt = ContinuousClock.now + .milliseconds(500)
        }
    }

    private func connect() throws -> RedisConnection {
        let redis = try RedisConnection(url: redisURL, timeout: commandTimeout)
        let known = shared.withLock { $0.epoch }
        if known == 0 {
            let epoch = UInt64(max(1, try redis.incr(epochKey)))
            shared.withLock { $0.epoch = epoch }
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
        let epoch = shared.withLock { $0.epoch }
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
        let epoch = shared.withLock { $0.epoch }
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
        let epoch = shared.withLock { $0.epoch }
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
}
