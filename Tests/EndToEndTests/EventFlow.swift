import Foundation
import SwitchboardHarness
import Synchronization

/// Upstream traffic that keeps flowing while a test breaks something: publishes events
/// round-robin over `channels` every `interval` on a thread of its own, each retried with
/// the same event id until JetStream acknowledges it, and records what was acknowledged.
final class EventFlow: @unchecked Sendable {
    struct Published: Sendable, Equatable {
        var channel: String
        var eventID: String
        var seq: UInt64
    }

    private let deployment: Deployment
    private let channels: [String]
    private let interval: Duration
    private let prefix: String
    private let published = Mutex<[Published]>([])
    private let failures = Mutex<[String]>([])
    private let stopping = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    init(_ deployment: Deployment, channels: [String], interval: Duration = .milliseconds(20), prefix: String = "flow") {
        self.deployment = deployment
        self.channels = channels
        self.interval = interval
        self.prefix = prefix
        Thread { [self] in run() }.start()
    }

    /// What JetStream acknowledged so far, in publish order.
    var acknowledged: [Published] { published.withLock { $0 } }
    func acknowledged(in channel: String) -> [Published] { acknowledged.filter { $0.channel == channel } }
    /// Events given up on (no ack within the retry bound), with the error.
    var failed: [String] { failures.withLock { $0 } }

    /// Stops publishing and waits for the event in flight to be acknowledged or given up.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        while !finished.load(ordering: .relaxed) { usleep(5_000) }
    }

    /// Waits until at least `count` more events than now are acknowledged (bounded).
    @discardableResult
    func waitForMore(_ count: Int, timeout: Duration = .seconds(20)) -> Bool {
        let target = acknowledged.count + count
        return eventually(timeout: timeout) { self.acknowledged.count >= target }
    }

    private func run() {
        defer { finished.store(true, ordering: .relaxed) }
        var index = 0
        while !stopping.load(ordering: .relaxed) {
            let channel = channels[index % channels.count]
            let id = "\(prefix)-\(index)"
            do {
                let seq = try deployment.publishEvent(channel: channel, id: id, text: "event \(index)")
                published.withLock { $0.append(Published(channel: channel, eventID: id, seq: seq)) }
            } catch {
                failures.withLock { $0.append("\(id): \(error)") }
            }
            index += 1
            usleep(UInt32(interval.components.attoseconds / 1_000_000_000_000) + UInt32(interval.components.seconds * 1_000_000))
        }
    }
}
