import CPeerClient
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The load client `switchboard-bench peer` uses for every system: the C epoll client
/// (`CPeerClient`) on one dedicated thread, which alone touches the C handle. The caller
/// queues sockets to open and installs a `PeerPointRecorder` per measurement point; the
/// thread records every marked frame into it, one lock per poll turn (not per frame).
final class PeerLoadClient: Sendable {
    /// One WebSocket to open: a loopback port and the request target (path and query).
    struct Target: Equatable, Sendable {
        var port: UInt16
        var path: String
    }

    private struct Shared {
        var queued: [Target] = []
        var recorder: PeerPointRecorder?
        var counters = pc_counters()
        var firstError = ""
        /// The client thread, for its CPU clock.
        var thread: pthread_t?
        var stopping = false
        var finished = false
    }

    private let shared = Mutex(Shared())
    let targets: [Target]

    /// Starts the client thread and opens `targets` (socket i is `targets[i]`), at most
    /// `concurrency` handshakes in flight.
    init(targets: [Target], concurrency: Int) throws {
        self.targets = targets
        shared.withLock { $0.queued = targets.reversed() }
        let capacity = UInt32(targets.count)
        let thread = Thread { [self] in loop(capacity: capacity, concurrency: concurrency) }
        thread.name = "peer-load-client"
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func loop(capacity: UInt32, concurrency: Int) {
        guard let client = pc_create(capacity) else {
            shared.withLock {
                $0.firstError = "pc_create failed"
                $0.finished = true
            }
            return
        }
        defer { pc_destroy(client) }
        shared.withLock { $0.thread = pthread_self() }
        var counters = pc_counters()
        var frames: UnsafePointer<pc_frame>?
        while true {
            let opening = shared.withLock { state -> [Target] in
                let room = max(0, concurrency - Int(counters.connecting))
                // `queued` is reversed: its end is the next target, so socket i is targets[i].
                let batch = Array(state.queued.suffix(room).reversed())
                state.queued.removeLast(batch.count)
                return batch
            }
            for target in opening where pc_open(client, target.port, target.path) < 0 {
                let reason = String(cString: strerror(errno))
                shared.withLock { if $0.firstError.isEmpty { $0.firstError = "open 127.0.0.1:\(target.port): \(reason)" } }
            }
            let count = Int(pc_poll(client, 20, &frames))
            pc_get_counters(client, &counters)
            let stop = shared.withLock { state -> Bool in
                if count > 0, let frames { state.recorder?.record(UnsafeBufferPointer(start: frames, count: count)) }
                state.counters = counters
                if state.firstError.isEmpty, let error = pc_first_error(client), error.pointee != 0 { state.firstError = String(cString: error) }
                return state.stopping
            }
            if stop { break }
        }
        shared.withLock { $0.finished = true }
    }

    /// Waits until every socket is open; throws when one failed or `timeout` passed.
    func waitConnected(timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (counters, error, finished) = shared.withLock { ($0.counters, $0.firstError, $0.finished) }
            if counters.open == UInt64(targets.count) { return }
            if counters.failed > 0 || counters.closed > 0 || finished {
                throw PeerBenchError.setup("\(counters.failed + counters.closed) of \(targets.count) WebSocket clients failed: \(error)")
            }
            guard ContinuousClock.now < deadline else {
                throw PeerBenchError.setup("\(counters.open) of \(targets.count) WebSocket clients open after \(timeout); \(error)")
            }
            usleep(20_000)
        }
    }

    /// Installs the recorder of the next point (frames of earlier points count as stale there).
    func begin(_ recorder: PeerPointRecorder) { shared.withLock { $0.recorder = recorder } }

    /// Removes and returns the current point's recorder.
    func end() -> PeerPointRecorder? { shared.withLock { state in defer { state.recorder = nil }; return state.recorder } }

    /// Distinct expected frames received so far in the current point, and when the last one came.
    var progress: (distinct: Int, lastReceivedNs: UInt64) {
        shared.withLock { ($0.recorder?.distinct ?? 0, $0.recorder?.lastReceivedNs ?? 0) }
    }

    var counters: pc_counters { shared.withLock { $0.counters } }
    var firstError: String { shared.withLock { $0.firstError } }

    /// CPU seconds (user + system) of the client thread alone: its thread CPU clock, the same
    /// time /proc/self/task/<tid>/stat counts in ticks.
    var cpuSeconds: Double {
        guard let thread = shared.withLock({ $0.thread }) else { return 0 }
        var clock = clockid_t()
        var time = timespec()
        guard pthread_getcpuclockid(thread, &clock) == 0, clock_gettime(clock, &time) == 0 else { return 0 }
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Stops the thread and closes every socket (bounded wait).
    func stop() {
        shared.withLock { $0.stopping = true }
        let deadline = ContinuousClock.now + .seconds(5)
        while !shared.withLock({ $0.finished }) && ContinuousClock.now < deadline { usleep(10_000) }
    }
}
