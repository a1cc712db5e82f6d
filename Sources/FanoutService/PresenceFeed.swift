import Foundation
import Logging
import RedisClient
import RoutingCore
import SwitchboardContracts
import ServiceLifecycle
import ServiceSupport
import SwitchboardProto
import Synchronization

/// Keeps the presence side of the routing table equal to what notifiers wrote to Redis.
///
/// Warm-up and every reconnection: subscribe to `presence` first and buffer its deltas,
/// scan the live instances' hashes (`presence:<instance>` at epoch `epoch:<instance>`), then
/// apply the buffer; deltas are idempotent and ordered by epoch, so the overlap is harmless.
/// A poll of the `instances` heartbeat zset expires instances silent for `instanceTimeout`.
/// While Redis is unreachable nothing expires: heartbeats cannot be seen, and dropping
/// every user would stop all deliveries; the rescan on reconnection settles the table.
///
/// Scans and polls block in hiredis, so they run on a dedicated thread: first in `warm()`
/// (the warm-up waits for the first complete scan), then in `run()` until graceful shutdown.
final class PresenceFeed: Service {
    /// Deltas buffered during a scan beyond this many restart the scan (bounded memory).
    static let maxBufferedDeltas = 1_000_000
    static let pollInterval: Duration = .milliseconds(500)

    private let redisURL: String
    private let state: RoutingState
    private let metrics: FanoutMetrics
    private let logger: Logger
    private let instanceTimeout: Duration
    private let scanState = Mutex<ScanState>(ScanState())
    private let isWarm = Atomic<Bool>(false)
    private let subscriber = Mutex<RedisSubscriber?>(nil)

    private struct ScanState {
        /// True between a (re)connection and the end of the scan it triggered.
        var scanRequested = true
        var scanning = false
        var buffer: [PresenceDelta] = []
        var overflowed = false
        var redisUp = false
    }

    init(redisURL: String, state: RoutingState, metrics: FanoutMetrics, instanceTimeout: Duration, logger: Logger) {
        self.redisURL = redisURL
        self.state = state
        self.metrics = metrics
        self.instanceTimeout = instanceTimeout
        self.logger = logger
    }

    /// Subscribes, scans, and returns once presence is warm (the first scan finished) or on
    /// graceful shutdown.
    func warm() async throws {
        let subscription = try RedisSubscriber(url: redisURL, channels: [PresenceKeys.channel]) { [weak self] event in self?.handle(event) }
        subscriber.withLock { $0 = subscription }
        await DedicatedThread.run(name: "presence-warm") { [self] stop in poll(until: stop, returningWhenWarm: true) }
    }

    /// Polls heartbeats and rescans when asked, until graceful shutdown; then unsubscribes.
    func run() async {
        await DedicatedThread.run(name: "presence") { [self] stop in
            poll(until: stop, returningWhenWarm: false)
            subscriber.withLock { $0 }?.stop()
        }
    }

    /// Runs on the subscriber's thread.
    private func handle(_ event: RedisSubscriber.Event) {
        switch event {
        case .connected:
            scanState.withLock { $0.redisUp = true; $0.scanRequested = true }
            logger.info("presence subscription connected; rescanning")
        case .disconnected(let reason):
            scanState.withLock { $0.redisUp = false }
            metrics.redisDisconnects.increment()
            logger.warning("presence subscription lost", metadata: ["reason": "\(reason)"])
        case .message(_, let payload):
            let delta: PresenceDelta
            do {
                delta = try PresenceDelta(decoding: payload)
            } catch {
                metrics.presenceRejected.increment()
                logger.warning("presence delta rejected", metadata: ["reason": "\(error)"])
                return
            }
            let applyNow = scanState.withLock { scan -> Bool in
                guard scan.scanning || scan.scanRequested else { return true }
                if scan.buffer.count < Self.maxBufferedDeltas { scan.buffer.append(delta) } else { scan.overflowed = true }
                return false
            }
            if applyNow { apply(delta) }
        }
    }

    private func apply(_ delta: PresenceDelta) {
        do {
            try state.applyPresence(delta)
            metrics.presenceDeltas.increment()
        } catch {
            metrics.presenceRejected.increment()
            logger.warning("presence delta rejected", metadata: ["instance": "\(delta.instanceID.prefix(80))", "reason": "\(error)"])
        }
    }

    private func poll(until stop: StopSignal, returningWhenWarm: Bool) {
        var connection: RedisConnection?
        while !stop.isRaised {
            do {
                if connection == nil { connection = try RedisConnection(url: redisURL) }
                let redis = connection!
                let shouldScan = scanState.withLock { scan -> Bool in
                    guard scan.redisUp && scan.scanRequested else { return false }
                    scan.scanRequested = false
                    scan.scanning = true
                    return true
                }
                if shouldScan { try scan(redis) }
                if returningWhenWarm && isWarm.load(ordering: .relaxed) { return }
                try pollHeartbeats(redis)
            } catch {
                metrics.redisErrors.increment()
                logger.warning("presence poll failed", metadata: ["error": "\(error)"])
                connection = nil
                scanState.withLock { if $0.scanning { $0.scanning = false; $0.scanRequested = true } }
            }
            stop.pause(Self.pollInterval)
        }
    }

    private func scan(_ redis: RedisConnection) throws {
        let started = ContinuousClock.now
        let now = Self.nowMs()
        let live = try redis.zrangeByScore(PresenceKeys.instances, min: Double(now - instanceTimeout.milliseconds), max: .infinity)
        var scanned: [String: (epoch: UInt64, users: [(String, UInt32)])] = [:]
        for (instance, _) in live {
            guard let epochText = try redis.command(["GET", PresenceKeys.epoch(instance: instance)]).text, let epoch = UInt64(epochText) else { continue }
            var users: [(String, UInt32)] = []
            var cursor: UInt64 = 0
            repeat {
                let page = try redis.hscan(PresenceKeys.users(instance: instance), cursor: cursor, count: 1000)
                for (user, slot) in page.pairs {
                    if let slot = UInt32(slot) { users.append((user, slot)) } else { metrics.presenceRejected.increment() }
                }
                cursor = page.next
            } while cursor != 0
            scanned[instance] = (epoch, users)
        }
        state.replacePresence(scanned, nowMs: now, graceMs: instanceTimeout.milliseconds)
        // Apply what arrived during the scan; an overflow means the scan is already stale.
        let (buffered, overflowed) = scanState.withLock { scan in
            defer { scan.buffer.removeAll(); scan.overflowed = false; scan.scanning = false }
            if scan.overflowed { scan.scanRequested = true }
            return (scan.buffer, scan.overflowed)
        }
        if !overflowed { buffered.forEach(apply) }
        let users = scanned.values.map(\.users.count).reduce(0, +)
        logger.info("presence scanned", metadata: [
            "instances": "\(scanned.count)", "users": "\(users)", "buffered_deltas": "\(buffered.count)",
            "ms": "\((ContinuousClock.now - started).milliseconds)",
        ])
        if !overflowed { isWarm.store(true, ordering: .relaxed) }
    }

    private func pollHeartbeats(_ redis: RedisConnection) throws {
        let beats = try redis.zrangeByScore(PresenceKeys.instances, min: -.infinity, max: .infinity)
        let now = Self.nowMs()
        let result = state.heartbeats(beats.compactMap { beat in Self.heartbeatMs(beat.score).map { (beat.member, $0) } }, nowMs: now, timeoutMs: instanceTimeout.milliseconds)
        if !result.revived.isEmpty {
            // A stalled notifier came back with the same epoch: read its hash again.
            logger.info("instances heartbeat again; rescanning presence", metadata: ["instances": "\(result.revived)"])
            scanState.withLock { $0.scanRequested = true }
        }
        for instance in result.expired {
            metrics.instancesExpired.increment()
            logger.warning("instance expired: no heartbeat", metadata: ["instance": "\(instance)", "timeout_s": "\(instanceTimeout.milliseconds / 1000)"])
        }
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A heartbeat score as milliseconds; nil for what no notifier writes (`inf`, `nan`, or
    /// beyond Int64), which `Int64(_:)` would trap on — anyone with Redis access can ZADD it.
    static func heartbeatMs(_ score: Double) -> Int64? {
        guard score.isFinite, score >= -9.2e18, score <= 9.2e18 else { return nil }
        return Int64(score)
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
