import Foundation

/// A Redis pub/sub subscription on its own thread that reconnects by itself and tells its
/// owner about every change of connection state.
///
/// Events, all delivered on the subscriber's thread, one at a time:
/// - `.connected` once `SUBSCRIBE` is confirmed for every channel, so an owner that rescans
///   state on `.connected` cannot miss a message published after its scan started;
/// - `.message` for each publication on a subscribed channel;
/// - `.disconnected` once per outage: when an established subscription is lost, or when the
///   first attempt fails. Further failed attempts while still down are not reported again.
///
/// After a loss the thread reconnects after `reconnectDelay`, doubling the delay per failed
/// attempt up to `maxReconnectDelay`, and resubscribes. It reads with `poll` in short
/// slices, so it notices `stop()` quickly without ever timing out inside hiredis (which
/// would leave the context unusable). A connection that goes quiet for
/// `healthCheckInterval` is probed with `PING`; no reply within `timeout` counts as lost,
/// which catches a server that hangs or a peer that vanished without closing the socket.
public final class RedisSubscriber: Sendable {
    /// A change of subscription state, or a message.
    public enum Event: Sendable, Equatable {
        case connected
        case disconnected(reason: String)
        case message(channel: String, payload: [UInt8])
    }

    /// Upper bound of the doubling reconnect delay.
    public static let maxReconnectDelay: Duration = .seconds(5)

    private let worker: SubscriberWorker

    /// Starts subscribing to `channels` at `url`. Throws only for an invalid URL: connection
    /// failures are reported as `.disconnected` and retried until `stop()`.
    ///
    /// - Parameters:
    ///   - timeout: bounds connecting, `AUTH` and `SUBSCRIBE` confirmation, and the wait for
    ///     a health-check `PONG`.
    ///   - healthCheckInterval: how long the connection may be silent before it is probed.
    ///   - handler: called on the subscriber's thread; it should hand work off rather than
    ///     block, since messages queue in the socket meanwhile.
    public init(
        url: String,
        channels: [String],
        reconnectDelay: Duration = .milliseconds(500),
        timeout: Duration = .seconds(2),
        healthCheckInterval: Duration = .seconds(5),
        handler: @escaping @Sendable (Event) -> Void
    ) throws {
        let endpoint = try RedisEndpoint(parsing: url)
        worker = SubscriberWorker(
            endpoint: endpoint, channels: channels, reconnectDelay: reconnectDelay,
            timeout: timeout, healthCheckInterval: healthCheckInterval, handler: handler
        )
        let thread = Thread { [worker] in worker.run() }
        thread.name = "redis-subscriber"
        thread.start()
    }

    /// Stops the subscription: once `stop()` returns, the handler is not called again. Waits
    /// up to one second for the thread to close its connection, then returns anyway (a
    /// connect attempt in progress finishes in the background). Idempotent; may be called
    /// from the handler. Do not call it while holding a lock the handler takes.
    public func stop() { worker.stop(waitingAtMost: .seconds(1)) }

    deinit { worker.stop(waitingAtMost: .zero) }
}

/// The subscriber thread's state. Separate from `RedisSubscriber` so that the thread does not
/// keep its owner alive and the owner's deinit can stop it.
private final class SubscriberWorker: @unchecked Sendable {  // its vars are guarded by the condition `state`
    /// How long one `poll` waits before the thread checks for `stop()` again.
    static let pollSlice: Duration = .milliseconds(250)
    /// Messages that arrive between the first and the last `SUBSCRIBE` confirmation are held
    /// and delivered after `.connected`; beyond this many they are dropped (an owner that
    /// rescans on `.connected` has them anyway).
    static let maxHeldMessages = 1024

    private let endpoint: RedisEndpoint
    private let channels: [String]
    private let reconnectDelay: Duration
    private let timeout: Duration
    private let healthCheckInterval: Duration
    private let handler: @Sendable (RedisSubscriber.Event) -> Void

    /// Serializes handler calls with `stop()`, so none runs after `stop()` returned.
    /// Recursive so that the handler itself may call `stop()`.
    private let delivery = NSRecursiveLock()
    /// Guards `stopping` and `exited`; signalled on both.
    private let state = NSCondition()
    private var stopping = false
    private var exited = false
    private var thread: Thread?

    init(
        endpoint: RedisEndpoint, channels: [String], reconnectDelay: Duration, timeout: Duration,
        healthCheckInterval: Duration, handler: @escaping @Sendable (RedisSubscriber.Event) -> Void
    ) {
        self.endpoint = endpoint
        self.channels = channels
        self.reconnectDelay = max(reconnectDelay, .milliseconds(1))
        self.timeout = timeout
        self.healthCheckInterval = healthCheckInterval
        self.handler = handler
    }

    private var isStopping: Bool {
        state.lock()
        defer { state.unlock() }
        return stopping
    }

    func stop(waitingAtMost wait: Duration) {
        state.lock()
        stopping = true
        state.broadcast()
        let worker = thread
        state.unlock()
        // Barrier: a handler call in progress finishes before stop() returns.
        delivery.lock()
        delivery.unlock()
        guard worker !== Thread.current, wait > .zero else { return }
        let deadline = Date(timeIntervalSinceNow: Double(HiredisContext.milliseconds(wait)) / 1000)
        state.lock()
        while !exited && state.wait(until: deadline) {}
        state.unlock()
    }

    private func deliver(_ event: RedisSubscriber.Event) {
        delivery.lock()
        defer { delivery.unlock() }
        guard !isStopping else { return }
        handler(event)
    }

    /// Sleeps for `duration` unless `stop()` comes first; returns false when stopping.
    private func sleep(_ duration: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(HiredisContext.milliseconds(duration)) / 1000)
        state.lock()
        defer { state.unlock() }
        while !stopping && state.wait(until: deadline) {}
        return !stopping
    }

    func run() {
        state.lock()
        thread = Thread.current
        state.unlock()
        defer {
            state.lock()
            exited = true
            state.broadcast()
            state.unlock()
        }
        var delay = reconnectDelay
        var down = false
        while !isStopping {
            do throws(RedisError) {
                let redis = try HiredisContext(endpoint: endpoint, timeout: timeout)
                try subscribe(redis)
                down = false
                delay = reconnectDelay
                try receive(redis)
                return  // stopping
            } catch {
                if !down {
                    down = true
                    deliver(.disconnected(reason: error.description))
                }
            }
            guard sleep(delay) else { return }
            delay = min(delay * 2, max(reconnectDelay, RedisSubscriber.maxReconnectDelay))
        }
    }

    /// Sends `SUBSCRIBE` and waits for every confirmation, then delivers `.connected` and any
    /// message that arrived in between.
    private func subscribe(_ redis: HiredisContext) throws(RedisError) {
        let name = "SUBSCRIBE"
        guard !channels.isEmpty else {
            deliver(.connected)
            return
        }
        try redis.append((["SUBSCRIBE"] + channels).map(\.utf8), name: name)
        try redis.flush(name: name)
        var pending = Set(channels)
        var held: [RedisSubscriber.Event] = []
        let deadline = ContinuousClock.now + timeout
        while !pending.isEmpty {
            guard !isStopping else { return }
            guard ContinuousClock.now < deadline else {
                throw .io(command: name, reason: "timed out after \(HiredisContext.milliseconds(timeout)) ms waiting for confirmation")
            }
            guard let reply = try redis.pollReply(waitingAtMost: Self.pollMilliseconds(until: deadline), name: name) else { continue }
            switch Self.push(reply) {
            case ("subscribe", let elements) where elements.count == 3:
                if let channel = elements[1].text { pending.remove(channel) }
            case ("message", _):
                if let message = Self.message(reply), held.count < Self.maxHeldMessages { held.append(message) }
            default:
                if case .error(let message) = reply { throw .server(command: name, message: message) }
            }
        }
        deliver(.connected)
        held.forEach(deliver)
    }

    /// Delivers messages until `stop()` (returns) or the connection is lost (throws).
    private func receive(_ redis: HiredisContext) throws(RedisError) {
        var lastHeard = ContinuousClock.now
        var pingSent: ContinuousClock.Instant?
        while !isStopping {
            if let reply = try redis.pollReply(waitingAtMost: Self.pollMilliseconds(Self.pollSlice), name: "SUBSCRIBE") {
                lastHeard = .now
                pingSent = nil
                if let message = Self.message(reply) {
                    deliver(message)
                } else if case .error(let text) = reply {
                    throw .server(command: "SUBSCRIBE", message: text)
                }
                continue
            }
            let now = ContinuousClock.now
            if let sent = pingSent {
                if now - sent >= timeout {
                    throw .io(command: "PING", reason: "no reply for \(HiredisContext.milliseconds(timeout)) ms (health check)")
                }
            } else if now - lastHeard >= healthCheckInterval {
                try redis.append(["PING".utf8], name: "PING")
                try redis.flush(name: "PING")
                pingSent = now
            }
        }
    }

    /// A pub/sub push as (kind, elements): `["message", channel, payload]`, `["subscribe", channel, count]`, `["pong", ""]`.
    private static func push(_ reply: RedisReply) -> (String, [RedisReply]) {
        guard case .array(let elements) = reply, let kind = elements.first?.text else { return ("", []) }
        return (kind, elements)
    }

    private static func message(_ reply: RedisReply) -> RedisSubscriber.Event? {
        let (kind, elements) = push(reply)
        guard kind == "message", elements.count == 3, let channel = elements[1].text,
              case .string(let payload) = elements[2] else { return nil }
        return .message(channel: channel, payload: payload)
    }

    private static func pollMilliseconds(_ duration: Duration) -> Int32 {
        Int32(clamping: max(1, HiredisContext.milliseconds(duration)))
    }

    private static func pollMilliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        pollMilliseconds(min(pollSlice, deadline - .now))
    }
}
