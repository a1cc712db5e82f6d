import NATSClient
import NIOCore
import SwitchboardContracts

/// Everything a notifier instance needs to run. Defaults work on loopback; the `notifier`
/// executable fills this from flags and `SWITCHBOARD_*` environment variables.
public struct NotifierConfiguration: Sendable {
    /// This instance's id: names its inbox subject and its presence hash. A valid `Identifier`.
    public var instanceID: String
    public var natsURL: String = "nats://127.0.0.1:4222"
    /// TLS towards NATS (PEM files; see the fan-out's `natsTLSCAFile`).
    public var natsTLSCAFile: String?
    public var natsTLSCertFile: String?
    public var natsTLSKeyFile: String?
    /// NATS credentials other than those in the URL (password, token, nkey or creds file).
    public var natsAuthentication = NATSConnection.Options.Authentication()
    public var redisURL: String = "redis://127.0.0.1:6379"
    /// Where HTTP and WebSocket clients connect (`/ws`, `/healthz`, `/readyz`, `/metrics`).
    public var host: String = "127.0.0.1"
    /// 0 picks a free port (the log line `notifier listening` names it).
    public var port: Int = 8080
    /// The HS256 secret shared with whoever issues client tokens.
    public var jwtSecret: [UInt8]
    /// Clock skew tolerated on a token's `exp`.
    public var jwtLeeway: Duration = .seconds(30)
    /// Partitions of the deployment (DESIGN: Partitioning), for typing subjects.
    public var partitionCount: Int = 16

    /// Open WebSocket connections at most; an upgrade past it gets HTTP 503. Bounds the
    /// memory and file descriptors one instance can be made to hold.
    public var maxConnections: Int = 50_000
    /// Bytes written to a socket but not yet taken by the kernel, at most; a socket over it
    /// is closed with 4008 "slow consumer" so that one slow client never holds memory or
    /// time that the others need. At least `ServerFrame.maxEventFrameBytes()`, so that every
    /// event the stream accepts fits one socket's budget (a single frame larger than the
    /// budget, written to an empty queue, is sent all the same).
    public var outboundBufferBytes: Int = 262_144
    /// Largest message accepted from a client, one frame or the sum of its fragments (close
    /// 1009 past it). Client frames are small JSON; this bounds what a client can make the
    /// server buffer.
    public var maxFrameBytes: Int = 16_384
    /// Inbound messages per second per socket, sustained (close 1008 past it, after the burst).
    public var maxInboundMessagesPerSecond: Double = 20
    /// Inbound messages a socket may send at once before the rate applies.
    public var inboundBurst: Double = 40
    /// Typing indicators a socket may publish per second; extra ones are dropped silently
    /// (the fan-out coalesces them anyway).
    public var typingPerSecond: Double = 2

    /// A ping goes to every socket at this interval; a socket silent for two intervals is closed.
    public var heartbeatInterval: Duration = .seconds(15)
    /// On drain, sockets are closed with 4000 spread over this window, so that clients do not
    /// all reconnect elsewhere in the same instant.
    public var drainWindow: Duration = .seconds(5)
    /// After sending a close frame, how long the peer has to answer before the TCP
    /// connection is closed anyway.
    public var closeHandshakeTimeout: Duration = .seconds(5)
    /// Presence heartbeat (`ZADD instances`) interval (DESIGN: every 2 s).
    public var presenceHeartbeat: Duration = .seconds(2)
    /// Presence operations waiting for Redis, at most; past it the queue is dropped and the
    /// whole local state is re-registered once Redis keeps up (bounds memory in an outage).
    public var presenceQueueLimit: Int = 100_000
    /// Replays (resumes) running or queued at once on this instance; more are refused `busy`.
    public var maxConcurrentReplays: Int = 64
    /// Threads of the process's one blocking pool (`NIOThreadPool.singleton`): one per replay
    /// that can be in flight — a replay may block for seconds while JetStream elects a
    /// leader — plus a few for presence rounds, NATS connect and drain and the inbox, so that
    /// a presence heartbeat never waits behind replays (a late heartbeat expires the instance).
    public var blockingThreads: Int { maxConcurrentReplays + 4 }
    /// Events one `resume` replays at most (see `EventReplayer`).
    public var maxReplayEvents: Int = 1000
    /// How long a released slot stays unused (see `LocalRouter`).
    public var slotReuseDelay: Duration = .seconds(30)
    /// Event-loop threads serving sockets.
    public var eventLoopThreads: Int = System.coreCountForNotifier
    /// HTTP routes the executable serves beside `/ws` and the operations endpoints (the
    /// development demo page); nil serves none.
    public var routes: (any NotifierRoutes)?

    public init(instanceID: String, jwtSecret: [UInt8]) {
        self.instanceID = instanceID
        self.jwtSecret = jwtSecret
    }

    /// The first problem with this configuration, as one line; nil when it is usable.
    public func problem() -> String? {
        if let problem = Identifier.problem(instanceID, kind: "instance") { return "--instance-id: \(problem)" }
        if jwtSecret.isEmpty { return "--jwt-secret: a non-empty secret is required (or --jwt-secret-file)" }
        if jwtSecret.count < 32 { return "--jwt-secret: use at least 32 bytes for HS256" }
        if !(0...65_535).contains(port) { return "--listen: port \(port) is out of range" }
        if maxConnections < 1 { return "--max-connections must be at least 1" }
        if outboundBufferBytes < ServerFrame.maxEventFrameBytes() {
            return "--outbound-buffer-bytes must be at least \(ServerFrame.maxEventFrameBytes()): an event of \(ServerFrame.maxEventBytes) bytes (CHAT_EVENTS max_msg_size) can render to a frame that large"
        }
        if heartbeatInterval < .milliseconds(100) { return "--heartbeat-seconds must be positive" }
        if drainWindow < .zero { return "--drain-seconds must not be negative" }
        if partitionCount < 1 { return "--partition-count must be at least 1" }
        if maxFrameBytes < 128 { return "--max-frame-bytes must be at least 128" }
        if maxInboundMessagesPerSecond <= 0 || inboundBurst < 1 { return "inbound rate limits must be positive" }
        if eventLoopThreads < 1 { return "event-loop threads must be at least 1" }
        return nil
    }
}

extension System {
    /// Event-loop threads by default: one per core.
    public static var coreCountForNotifier: Int { System.coreCount }
}
