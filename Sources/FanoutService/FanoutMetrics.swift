import CoreMetrics

/// The fan-out's Prometheus metrics (through swift-metrics). Names are the grep-able contract
/// for dashboards; everything counts events, deliveries or bytes, never per-user labels.
final class FanoutMetrics: Sendable {
    let eventsIn = Counter(label: "switchboard_fanout_events_in_total")
    let eventsAcked = Counter(label: "switchboard_fanout_events_acked_total")
    let eventsWithoutRecipients = Counter(label: "switchboard_fanout_events_without_recipients_total")
    let deliveries = Counter(label: "switchboard_fanout_deliveries_total")
    /// Inbox messages published; each carries the deliveries of one or more events.
    let inboxMessages = Counter(label: "switchboard_fanout_inbox_messages_total")
    let recipients = Counter(label: "switchboard_fanout_recipients_total")
    let deadLettered = Counter(label: "switchboard_fanout_dead_lettered_total")
    let fetchErrors = Counter(label: "switchboard_fanout_fetch_errors_total")
    let flushErrors = Counter(label: "switchboard_fanout_flush_errors_total")
    let ackErrors = Counter(label: "switchboard_fanout_ack_errors_total")
    /// Errors the server reported after connecting (e.g. a permission violation).
    let natsAsyncErrors = Counter(label: "switchboard_fanout_nats_async_errors_total")
    let retries = Counter(label: "switchboard_fanout_delivery_retries_total")
    /// Redeliveries of events already handled: acked, not delivered again.
    let redeliveriesSkipped = Counter(label: "switchboard_fanout_redeliveries_skipped_total")
    /// Jumps in a consumer's delivery numbers (deliveries lost on the way) and the events then
    /// read from the stream instead.
    let gapsFilled = Counter(label: "switchboard_fanout_delivery_gaps_total")
    let eventsReadAfterGap = Counter(label: "switchboard_fanout_events_read_after_gap_total")
    /// Times a pipeline found `CHAT_EVENTS` created anew and bound to the new stream.
    let streamsCreatedAnew = Counter(label: "switchboard_fanout_streams_created_anew_total")
    /// Messages one read of a pipeline's pull feed brought, across its partitions.
    let fetchBatch = Recorder(label: "switchboard_fanout_fetch_batch_size")
    /// Flush-and-ack rounds: each confirms every delivery published before it.
    let confirmations = Counter(label: "switchboard_fanout_confirmations_total")
    let planning = Timer(label: "switchboard_fanout_planning_seconds")

    /// Partitions whose lease this replica holds and delivers (0 on a standby).
    let activePartitions = Gauge(label: "switchboard_fanout_active_partitions")
    /// Leases this replica acquired (at start-up or from a holder that stopped renewing)...
    let leasesAcquired = Counter(label: "switchboard_fanout_leases_acquired_total")
    /// ...and terms it lost (another replica wrote over it, or its writes failed too long).
    let leasesLost = Counter(label: "switchboard_fanout_leases_lost_total")
    /// Reads and writes of `FANOUT_LEASES` that failed (a lease store outage shows here).
    let leaseStoreErrors = Counter(label: "switchboard_fanout_lease_store_errors_total")

    let membershipChanges = Counter(label: "switchboard_fanout_membership_changes_total")
    let membershipRejected = Counter(label: "switchboard_fanout_membership_rejected_total")
    let presenceDeltas = Counter(label: "switchboard_fanout_presence_deltas_total")
    let presenceRejected = Counter(label: "switchboard_fanout_presence_rejected_total")
    let instancesExpired = Counter(label: "switchboard_fanout_instances_expired_total")
    let redisDisconnects = Counter(label: "switchboard_fanout_redis_disconnects_total")
    let redisErrors = Counter(label: "switchboard_fanout_redis_errors_total")

    let typingIn = Counter(label: "switchboard_fanout_typing_in_total")
    let typingOut = Counter(label: "switchboard_fanout_typing_out_total")
    let typingCoalesced = Counter(label: "switchboard_fanout_typing_coalesced_total")
    let typingRejected = Counter(label: "switchboard_fanout_typing_rejected_total")

    let snapshotsWritten = Counter(label: "switchboard_fanout_snapshots_written_total")
    let snapshotErrors = Counter(label: "switchboard_fanout_snapshot_errors_total")

    let tableBytes = Gauge(label: "switchboard_fanout_table_bytes")
    let memberships = Gauge(label: "switchboard_fanout_memberships")
    let channels = Gauge(label: "switchboard_fanout_channels")
    let onlineUsers = Gauge(label: "switchboard_fanout_online_users")
    let instances = Gauge(label: "switchboard_fanout_instances")
    let coldStartSeconds = Gauge(label: "switchboard_fanout_cold_start_seconds")
    let ready = Gauge(label: "switchboard_fanout_ready")
    private let lagGauges: [Int: Gauge]

    init(partitions: [Int]) {
        lagGauges = Dictionary(uniqueKeysWithValues: partitions.map {
            ($0, Gauge(label: "switchboard_fanout_consumer_lag", dimensions: [("partition", "\($0)")]))
        })
    }

    func setLag(partition: Int, _ lag: UInt64) { lagGauges[partition]?.record(Double(lag)) }
}
