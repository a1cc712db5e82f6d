import Foundation
import NATSClient
import SwitchboardContracts

/// Errors of the fan-out service: each says what failed and with which subject, stream or
/// partition, so an operator can act on the log line alone.
public enum FanoutError: Error, CustomStringConvertible {
    case invalidConfiguration(String)
    case snapshotCorrupt(partition: Int, reason: String)
    case dictionaryUnusable(String, reason: String)
    case startup(stage: String, reason: String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let why): "invalid configuration: \(why)"
        case .snapshotCorrupt(let partition, let reason): "routing snapshot of partition \(partition) is unusable: \(reason)"
        case .dictionaryUnusable(let dictionary, let reason): "snapshot user dictionary \(dictionary) is unusable: \(reason)"
        case .startup(let stage, let reason): "start-up failed during \(stage): \(reason)"
        }
    }
}

/// The partitions one replica owns, parsed from `--partitions` ("0-15", "0-7", "1,3,8-11").
public struct PartitionSet: Sendable, Equatable, CustomStringConvertible {
    public let count: Int
    public let owned: [Int]

    public init(_ spec: String, count: Int) throws(FanoutError) {
        guard count >= 1 && count <= 4096 else { throw .invalidConfiguration("--partition-count must be 1...4096, got \(count)") }
        var owned = Set<Int>()
        for part in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(bounds.count), let low = bounds.first!, let high = bounds.last! else {
                throw .invalidConfiguration("--partitions '\(spec)': '\(part)' is not a number or a range like 0-7")
            }
            guard low <= high, low >= 0, high < count else {
                throw .invalidConfiguration("--partitions '\(spec)': \(part) is outside 0-\(count - 1)")
            }
            owned.formUnion(low...high)
        }
        self.count = count
        self.owned = owned.sorted()
    }

    /// The range a StatefulSet ordinal owns when `replicas` replicas split `count` partitions
    /// evenly (the first `count % replicas` replicas take one more). With `copies` C, the
    /// replicas form R/C shares and ordinals N, N + R/C, … own the same one (an active replica
    /// and its warm standbys; pods of one share sit far apart in the ordinals, so a rolling
    /// update never restarts both at once).
    public static func forOrdinal(_ ordinal: Int, replicas: Int, copies: Int = 1, count: Int) throws(FanoutError) -> PartitionSet {
        guard copies >= 1, replicas % copies == 0 else {
            throw .invalidConfiguration("--replicas \(replicas) must be a multiple of --copies \(copies)")
        }
        guard replicas >= 1, ordinal >= 0, ordinal < replicas, replicas / copies <= count else {
            throw .invalidConfiguration("ordinal \(ordinal) of \(replicas) replicas cannot split \(count) partitions")
        }
        let shares = replicas / copies
        guard copies == 1 else { return try forOrdinal(ordinal % shares, replicas: shares, count: count) }
        let base = count / replicas, extra = count % replicas
        let start = ordinal * base + min(ordinal, extra)
        let size = base + (ordinal < extra ? 1 : 0)
        return try PartitionSet("\(start)-\(start + size - 1)", count: count)
    }

    public func contains(_ partition: Int) -> Bool { owned.contains(partition) }

    public var description: String { PartitionRanges.describe(owned) }
}

/// Everything the fan-out needs to run; the `fanout` executable fills it from flags and env.
public struct FanoutConfig: Sendable {
    public var natsURL = "nats://127.0.0.1:4222"
    /// TLS towards NATS: CA certificates to verify the servers, and a client certificate and
    /// key for servers that verify clients (PEM files; nil: plain TCP unless a URL says tls://).
    public var natsTLSCAFile: String?
    public var natsTLSCertFile: String?
    public var natsTLSKeyFile: String?
    /// NATS credentials other than those in the URL (password, token, nkey or creds file).
    public var natsAuthentication = NATSConnection.Options.Authentication()
    public var redisURL = "redis://127.0.0.1:6379"
    public var partitions: PartitionSet
    public var replicaID = "fanout-0"
    public var httpHost = "127.0.0.1"
    public var httpPort = 9090
    /// Folder with the `streams/*.json` definitions applied at start-up.
    public var streamsDirectory = "streams"
    /// Overrides `num_replicas` of every stream (R3 on a three-node cluster); nil keeps the files'.
    public var streamReplicas: Int?
    /// Messages one pull request asks for, and the most one pipeline cycle takes.
    public var fetchBatch = 256
    /// Pipeline threads; the owned partitions are dealt out among them. Each thread runs one
    /// cycle (read, publish, confirm) for all of its partitions.
    public var pipelineThreads = 1
    /// Deliveries are confirmed (one flush, then one ack-all per partition) at most this long
    /// after the oldest unconfirmed one was published, and at once when the pipeline is idle.
    /// Longer means fewer flushes and acks under load, and more redeliveries after a crash.
    public var ackInterval: Duration = .milliseconds(50)
    /// ...or once this many events wait for confirmation.
    public var maxUnconfirmed = 4_096
    /// How long a pull request stays open at the server, and how often the server says an
    /// idle one is still there (two missed heartbeats: the requests are sent again).
    public var pullExpires: Duration = .seconds(10)
    public var pullHeartbeat: Duration = .seconds(1)
    /// One inbox message carries the deliveries for one instance of at most this many
    /// events of one read...
    public var inboxBatchDeliveries = 128
    /// ...and at most this many bytes (unless one delivery alone is larger); well under
    /// nats-server's default `max_payload` of 1 MiB.
    public var inboxBatchBytes = 256 * 1024
    /// Snapshot a partition after this many membership changes...
    public var snapshotEveryChanges = 100_000
    /// ...or this long after its last snapshot if anything changed.
    public var snapshotInterval: Duration = .seconds(60)
    /// An instance whose heartbeat is older than this is removed from routing (DESIGN: 10 s).
    public var instanceTimeout: Duration = .seconds(10)
    /// Typing indicators from one user in one channel are forwarded at most once per window.
    public var typingWindow: Duration = .seconds(3)
    /// Deliveries not flushed to the server within this time are not acked (redelivered later).
    public var flushTimeout: Duration = .seconds(2)
    /// Events fetched but not acked within this time are redelivered: the bound on how long
    /// a crashed replica's in-flight events wait before its successor gets them.
    public var ackWait: Duration = .seconds(5)
    /// Partition leases among replicas: a standby takes over once a lease has not been renewed
    /// for `leaseTiming.takeoverAfter` (the failover bound, less the takeover's own work).
    var leaseTiming = LeaseTiming()
    public var leaseTakeoverAfter: Duration {
        get { leaseTiming.takeoverAfter }
        set { leaseTiming = LeaseTiming(takeoverAfter: newValue) }
    }
    /// First pause before an event pipeline retries a failed batch; doubles per try...
    public var retryBackoff: Duration = .milliseconds(50)
    /// ...up to this (10 tries take about 9 s of pauses before an event is dead-lettered).
    public var retryBackoffMax: Duration = .seconds(2)

    public init(partitions: PartitionSet) { self.partitions = partitions }
}
