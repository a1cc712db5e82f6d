import Metrics

/// The notifier's metrics (`switchboard_notifier_*`), created once per service.
final class NotifierMetrics: Sendable {
    /// Open WebSocket connections.
    let connections = Gauge(label: "switchboard_notifier_connections")
    /// Users with at least one open socket.
    let onlineUsers = Gauge(label: "switchboard_notifier_online_users")
    /// Inbox messages received, by kind (`delivery`: a `Deliveries` message, `typing`).
    let deliveryMessagesIn = Counter(label: "switchboard_notifier_inbox_messages_total", dimensions: [("kind", "delivery")])
    /// Resumes naming another epoch than the current one (answered `epoch_changed`).
    let resumesOfAnotherEpoch = Counter(label: "switchboard_notifier_resumes_total", dimensions: [("outcome", "epoch_changed")])
    /// Deliveries (one per event) in the `Deliveries` messages received.
    let deliveriesIn = Counter(label: "switchboard_notifier_deliveries_in_total")
    /// Errors the server reported after connecting (e.g. a permission violation).
    let natsAsyncErrors = Counter(label: "switchboard_notifier_nats_async_errors_total")
    let typingIn = Counter(label: "switchboard_notifier_inbox_messages_total", dimensions: [("kind", "typing")])
    /// Inbox messages that could not be decoded (counted and dropped).
    let undecodable = Counter(label: "switchboard_notifier_undecodable_inbox_messages_total")
    /// WebSocket frames written to clients from the inbox (events and typing).
    let framesWritten = Counter(label: "switchboard_notifier_frames_written_total")
    /// Slots in a delivery that had no socket here (user gone between plan and delivery).
    let droppedNoSocket = Counter(label: "switchboard_notifier_dropped_deliveries_total", dimensions: [("reason", "no_socket")])
    /// Frames not written because the socket was already closing.
    let droppedClosing = Counter(label: "switchboard_notifier_dropped_deliveries_total", dimensions: [("reason", "closing")])
    /// Sockets closed for going over their outbound buffer.
    let slowConsumerCloses = Counter(label: "switchboard_notifier_closes_total", dimensions: [("reason", "slow_consumer")])
    let rateLimitCloses = Counter(label: "switchboard_notifier_closes_total", dimensions: [("reason", "rate_limit")])
    let frameTooLargeCloses = Counter(label: "switchboard_notifier_closes_total", dimensions: [("reason", "too_large")])
    let heartbeatCloses = Counter(label: "switchboard_notifier_closes_total", dimensions: [("reason", "heartbeat_timeout")])
    let drainCloses = Counter(label: "switchboard_notifier_closes_total", dimensions: [("reason", "drain")])
    /// Sockets asked to reconnect and resume because deliveries may have been lost while the
    /// NATS connection was down.
    let natsReconnectCloses = Counter(label: "switchboard_notifier_closes_total", dimensions: [("reason", "nats_reconnect")])
    /// NATS connection losses (each followed by a reconnect or by the process giving up).
    let natsDisconnects = Counter(label: "switchboard_notifier_nats_disconnects_total")
    /// Client typing indicators published to the fan-out.
    let typingPublished = Counter(label: "switchboard_notifier_typing_published_total")
    /// Presence operations that failed against Redis (the registrar re-registers after).
    let presenceErrors = Counter(label: "switchboard_notifier_presence_errors_total")
    /// Full re-registrations of local users in Redis.
    let presenceResyncs = Counter(label: "switchboard_notifier_presence_resyncs_total")

    private let authFailures: [AuthFailure: Counter]
    private let refusalCounters: [Refusal: Counter]

    /// Upgrade requests refused for a reason other than authentication.
    enum Refusal: String, CaseIterable {
        case capacity = "max_connections"
        case draining = "draining"
    }

    init() {
        var auth: [AuthFailure: Counter] = [:]
        for reason in AuthFailure.allCases {
            auth[reason] = Counter(label: "switchboard_notifier_auth_failures_total", dimensions: [("reason", reason.rawValue)])
        }
        authFailures = auth
        var refusals: [Refusal: Counter] = [:]
        for kind in Refusal.allCases {
            refusals[kind] = Counter(label: "switchboard_notifier_refusals_total", dimensions: [("kind", kind.rawValue)])
        }
        refusalCounters = refusals
    }

    func authFailed(_ reason: AuthFailure) { authFailures[reason]?.increment() }
    func refused(_ kind: Refusal) { refusalCounters[kind]?.increment() }
}
