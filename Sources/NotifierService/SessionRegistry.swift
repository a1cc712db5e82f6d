import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The shared, locked `LocalRouter` of one server, plus the admission count.
///
/// The lock is held for table updates (connect, disconnect) and for the slot lookups of one
/// inbox message; socket writes happen after it is released, on the sockets' own loops.
final class SessionRegistry: Sendable {
    /// Receives a user's first-socket / last-socket transitions (the presence registrar).
    /// Called with the table locked, so that the registrar sees them in table order.
    struct PresenceSink: Sendable {
        var online: @Sendable (_ user: String, _ slot: UInt32) -> Void
        var offline: @Sendable (_ user: String, _ slot: UInt32) -> Void
    }

    private let router: NIOLockedValueBox<LocalRouter<WebSocketSession>>
    private let admitted = NIOLockedValueBox(0)
    private let tcpConnections = NIOLockedValueBox(0)
    /// TCP connections allowed beyond `maxConnections`, for probes and for answering
    /// refused upgrades with a proper 401/503.
    static let tcpHeadroom = 1024
    private let presence: NIOLockedValueBox<PresenceSink?> = NIOLockedValueBox(nil)
    private let metrics: NotifierMetrics
    private let draining = Atomic(false)
    /// Signalled when the last socket unregisters (the drain waits for it).
    private let emptied = Wakeup()
    let maxConnections: Int

    init(maxConnections: Int, slotReuseDelay: Duration, metrics: NotifierMetrics) {
        self.maxConnections = maxConnections
        self.metrics = metrics
        router = NIOLockedValueBox(LocalRouter(reuseDelay: slotReuseDelay))
    }

    func setPresenceSink(_ sink: PresenceSink?) {
        presence.withLockedValue { $0 = sink }
    }

    // MARK: Drain

    /// True once the instance drains: upgrades are refused and NATS reconnects no longer
    /// send sockets away (the drain does).
    var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Starts the drain; false when it had already started.
    func beginDrain() -> Bool {
        !draining.exchange(true, ordering: .relaxed)
    }

    /// Returns once no socket is registered, or at `deadline`.
    func waitUntilEmpty(deadline: ContinuousClock.Instant) async {
        while socketCount > 0 && ContinuousClock.now < deadline {
            await emptied.wait(until: deadline)
        }
    }

    /// Closes every open socket with 4000 "reconnect", spread evenly over `window` so that
    /// their reconnects (and resumes) do not arrive all at once. Each close runs on its
    /// socket's own loop.
    func closeAll(spreadOver window: TimeAmount, becauseNATSReconnected: Bool) -> Int {
        let sessions = allSessions()
        for (index, session) in sessions.enumerated() {
            let delay: TimeAmount = sessions.count <= 1 ? .nanoseconds(0) : .nanoseconds(window.nanoseconds * Int64(index) / Int64(sessions.count))
            session.eventLoop.scheduleTask(in: delay) { session.closeForDrain(becauseNATSReconnected: becauseNATSReconnected) }
        }
        return sessions.count
    }

    // MARK: Admission

    /// Takes one of the `maxConnections` places; false when all are taken.
    func reserveConnection() -> Bool {
        admitted.withLockedValue { count in
            guard count < maxConnections else { return false }
            count += 1
            return true
        }
    }

    func releaseConnection() {
        admitted.withLockedValue { $0 -= 1 }
    }

    var admittedConnections: Int { admitted.withLockedValue { $0 } }

    /// Counts `channel` until it closes; false (not counted) when over the TCP bound.
    func openTCPConnection(_ channel: any Channel) -> Bool {
        let limit = maxConnections + Self.tcpHeadroom
        let accepted = tcpConnections.withLockedValue { count -> Bool in
            guard count < limit else { return false }
            count += 1
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { [tcpConnections] _ in tcpConnections.withLockedValue { $0 -= 1 } }
        }
        return accepted
    }

    // MARK: Table

    func register(_ session: WebSocketSession) {
        let sink = presence.withLockedValue { $0 }
        let (sockets, users) = router.withLockedValue { router in
            let (slot, isFirst) = router.add(session, user: session.userID, now: .now)
            if isFirst { sink?.online(session.userID, slot) }
            return (router.socketCount, router.userCount)
        }
        metrics.connections.record(sockets)
        metrics.onlineUsers.record(users)
    }

    func unregister(_ session: WebSocketSession) {
        let sink = presence.withLockedValue { $0 }
        let (sockets, users) = router.withLockedValue { router in
            let result = router.remove(session, user: session.userID, now: .now)
            if let result, result.isLast { sink?.offline(session.userID, result.slot) }
            return (router.socketCount, router.userCount)
        }
        metrics.connections.record(sockets)
        metrics.onlineUsers.record(users)
        if sockets == 0 { emptied.signal() }
    }

    func registrations() -> [(userID: String, slot: UInt32)] {
        router.withLockedValue { $0.registrations() }
    }

    func allSessions() -> [WebSocketSession] {
        router.withLockedValue { $0.allSockets() }
    }

    var socketCount: Int { router.withLockedValue { $0.socketCount } }
    var userCount: Int { router.withLockedValue { $0.userCount } }

    // MARK: Delivery (hot path)

    /// One client frame for the sockets of some slots: an event of `channel` at `seq` of
    /// `epoch`, or a typing frame with seq 0.
    struct SlotFrame {
        let frame: TextFrame
        let channel: String
        let seq: UInt64
        var epoch = ""
        let slots: [UInt32]
    }

    /// Writes `frame` to every socket of every slot (see `deliver(_:)`).
    @discardableResult
    func deliver(_ frame: TextFrame, channel: String, seq: UInt64, toSlots slots: [UInt32]) -> Int {
        deliver([SlotFrame(frame: frame, channel: channel, seq: seq, slots: slots)])
    }

    /// Writes each frame, in order, to every socket of its slots: the sockets of all the
    /// frames are looked up under one lock and grouped by event loop, then each loop gets one
    /// task that writes every frame for its sockets (the same buffer for all of them) and
    /// flushes each socket once; the caller's own loop, when it is one, does so at once.
    /// Returns the number of slots that had no socket.
    @discardableResult
    func deliver(_ frames: [SlotFrame]) -> Int {
        var groups: [(loop: any EventLoop, writes: [(session: WebSocketSession, frame: Int)])] = []
        var missing = 0
        router.withLockedValue { router in
            for (index, frame) in frames.enumerated() {
                for slot in frame.slots {
                    let found = router.forEachSocket(inSlot: slot) { session in
                        if let group = groups.firstIndex(where: { $0.loop === session.eventLoop }) {
                            groups[group].writes.append((session, index))
                        } else {
                            groups.append((session.eventLoop, [(session, index)]))
                        }
                    }
                    if !found { missing += 1 }
                }
            }
        }
        if missing > 0 { metrics.droppedNoSocket.increment(by: missing) }
        let metrics = metrics
        for group in groups {
            let writes = group.writes
            let write: @Sendable () -> Void = {
                var written = 0
                for (session, index) in writes {
                    let frame = frames[index]
                    if session.deliver(frame.frame, channel: frame.channel, seq: frame.seq, epoch: frame.epoch, flush: false) { written += 1 }
                }
                for (session, _) in writes { session.flushDeliveries() }
                metrics.framesWritten.increment(by: written)
                if written < writes.count { metrics.droppedClosing.increment(by: writes.count - written) }
            }
            // The inbox's own loop writes its sockets in the same turn: no task, no wake.
            if group.loop.inEventLoop { write() } else { group.loop.execute(write) }
        }
        return missing
    }
}
