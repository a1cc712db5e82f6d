/// What one pull consumer's requests in flight still ask the server for (pure: no I/O).
///
/// A JetStream pull request asks for up to `batch` messages and stays open at the server until
/// they are delivered or it expires; the server fills open requests in the order they came.
/// `PullFeed` asks for the next batch once less than half of the open credit is left, so the
/// consumer always has a request waiting and a message never waits for a round trip.
///
/// The server ends an unfilled request with a 408 (expired) or 409 status, and sends a 100
/// heartbeat on an open request that has been idle for the heartbeat interval. Requests go
/// missing without a word when the connection is re-established or the consumer's leader
/// changes: two heartbeats missed while requests are open mean none is open any more.
public struct PullCredit: Sendable {
    public let batch: Int
    public let expires: Duration
    public let heartbeat: Duration
    /// Open requests, oldest first: when each was sent and how many messages it still asks for.
    private var open: [(sent: ContinuousClock.Instant, remaining: Int)] = []
    /// The last time the server was heard from on this consumer's requests.
    private var lastHeard: ContinuousClock.Instant

    public init(batch: Int, expires: Duration, heartbeat: Duration, now: ContinuousClock.Instant = .now) {
        self.batch = max(1, batch)
        self.expires = expires
        self.heartbeat = heartbeat
        lastHeard = now
    }

    /// Messages the open requests still ask for.
    public var outstanding: Int { open.reduce(0) { $0 + $1.remaining } }
    public var openRequests: Int { open.count }

    /// A message arrived: it fills the oldest open request.
    public mutating func received(at now: ContinuousClock.Instant) {
        lastHeard = now
        guard !open.isEmpty else { return }
        open[0].remaining -= 1
        if open[0].remaining <= 0 { open.removeFirst() }
    }

    /// A heartbeat arrived: the open requests are still there.
    public mutating func heard(at now: ContinuousClock.Instant) { lastHeard = now }

    /// The server ended the oldest open request unfilled (408 or 409).
    public mutating func ended(at now: ContinuousClock.Instant) {
        lastHeard = now
        if !open.isEmpty { open.removeFirst() }
    }

    /// Every open request is gone (the consumer was recreated, the connection came back).
    public mutating func reset(at now: ContinuousClock.Instant) {
        open.removeAll()
        lastHeard = now
    }

    /// Whether a request for `batch` more should go out now. Forgets requests that must have
    /// expired (their status lost) and, after two missed heartbeats, all open ones.
    public mutating func needsRequest(at now: ContinuousClock.Instant) -> Bool {
        let lifetime = expires + heartbeat
        // Oldest first: when the oldest has not expired, none has (the common case, every turn).
        if let oldest = open.first, now - oldest.sent > lifetime { open.removeAll { now - $0.sent > lifetime } }
        if !open.isEmpty && now - lastHeard > heartbeat * 2 { reset(at: now) }
        return outstanding <= batch / 2
    }

    /// A request for `batch` went out.
    public mutating func requested(at now: ContinuousClock.Instant) {
        if open.isEmpty { lastHeard = now }
        open.append((now, batch))
    }
}
