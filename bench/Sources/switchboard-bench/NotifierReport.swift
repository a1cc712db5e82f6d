import Foundation
import SwitchboardContracts

/// The result block of `switchboard-bench notifier` (Markdown, printed and optionally
/// appended to bench/RESULTS.md under `## Notifier`), with the target verdicts.
struct NotifierReport {
    /// DESIGN targets (on a 2-core dev machine).
    static let targetBytesPerSocket = 16 * 1024
    static let targetSockets = 50_000
    static let targetWritesPerSecond = 500_000.0

    var date: Date
    var command, load, fileDescriptors: String
    var clientThreads: Int
    var notifierThreads: Int?
    var eventsPerBurst: Int
    var memory: NotifierMemoryPhase.Result?
    var ceiling: NotifierWriteCeiling.Result?
    var delivery: [NotifierDeliveryPhase.Run]

    static func verdict(_ met: Bool) -> String { met ? "met" : "NOT met" }
    static func kb(_ bytes: Double) -> String { String(format: "%.2f", bytes / 1024) }
    static func mb(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1_048_576) }

    var markdown: String {
        var lines: [String] = []
        lines.append("### \(ISO8601DateFormatter().string(from: date))")
        lines.append("")
        lines.append("- machine: \(Machine.description); load average at start \(load)")
        lines.append("- command: `\(command)`")
        lines.append("- \(fileDescriptors)")
        lines.append("- clients: SwiftNIO WebSocket channels in the bench process on \(clientThreads) event-loop thread(s), source addresses 127.0.0.2, 127.0.0.3, …; "
            + "the notifier runs \(notifierThreads.map { "\($0)" } ?? "its default (one per core)") event-loop thread(s). **Clients, notifier, nats-server and redis-server share the same cores.**")
        if let memory { lines += memoryLines(memory) }
        if !delivery.isEmpty { lines += deliveryLines() }
        return lines.joined(separator: "\n") + "\n"
    }

    private func memoryLines(_ memory: NotifierMemoryPhase.Result) -> [String] {
        var lines = ["", "| idle sockets | notifier RSS MB | KB per socket | opened in s |", "|---:|---:|---:|---:|"]
        lines.append("| 0 | \(Self.mb(memory.baselineBytes)) | | |")
        for point in memory.points {
            lines.append("| \(point.sockets) | \(Self.mb(point.residentBytes)) | \(Self.kb(point.bytesPerSocket)) | " + String(format: "%.1f", point.connectSeconds) + " |")
        }
        lines.append("")
        lines.append("- KB per socket = (VmRSS with N idle sockets − VmRSS before any) ÷ N; each socket past its hello frame and its user in `presence:<instance>`; kernel socket buffers are not in VmRSS")
        let worst = memory.points.map(\.bytesPerSocket).max() ?? .infinity
        lines.append("- ≤ 16 KB per idle socket: **\(Self.verdict(!memory.points.isEmpty && worst <= Double(Self.targetBytesPerSocket)))** (largest measured: \(Self.kb(worst)) KB)")
        let reached = memory.points.last?.sockets ?? 0
        var socketsLine = "- \(Self.targetSockets) sockets on one instance: **\(Self.verdict(reached >= Self.targetSockets))** (reached \(reached))"
        if let ceiling = memory.ceiling, reached < Self.targetSockets {
            socketsLine += "; not measurable here beyond \(reached): \(ceiling)"
            if let perSocket = memory.points.last?.bytesPerSocket {
                let projected = Double(memory.baselineBytes) + perSocket * Double(Self.targetSockets)
                socketsLine += String(format: "; at the measured per-socket cost, %d sockets would be ≈ %.0f MB RSS (an extrapolation, not a measurement)",
                                      Self.targetSockets, projected / 1_048_576)
            }
        }
        lines.append(socketsLine)
        if memory.failed > 0 { lines.append("- sockets that failed to open: \(memory.failed) (first: \(memory.firstError ?? "?"))") }
        lines.append("- idle sockets closed by the server during the phase: \(memory.closedByServer)")
        return lines
    }

    private func deliveryLines() -> [String] {
        var lines = ["", "| delivery run | sockets | writes/s (bursts of \(eventsPerBurst)) | burst min / max | single event, publish → last frame, ms (median) | frames per socket (min/max, expected) | notifier: deliveries / frames written / dropped |",
                     "|---|---:|---:|---:|---:|---:|---:|"]
        for run in delivery {
            let singles = run.singleEventMs.sorted()
            let median = singles.isEmpty ? "–" : String(format: "%.1f", singles[singles.count / 2])
            let minMax = run.burstRates.isEmpty ? "–" : "\(PipelineBench.thousands(run.burstRates.min()!)) / \(PipelineBench.thousands(run.burstRates.max()!))"
            lines.append("| \(run.label) | \(run.sockets) | \(PipelineBench.thousands(run.burstRate)) | \(minMax) | \(median) | \(run.perSocketMin)/\(run.perSocketMax), \(run.events) | "
                + "\(Int(run.deliveriesIn)) / \(Int(run.framesWritten)) / \(Int(run.droppedNoSocket + run.droppedClosing)) |")
        }
        lines.append("")
        if let first = delivery.first {
            let header = NotifierWriteCeiling.webSocketHeader(payloadBytes: first.frameBytes).count
            lines.append("- event frame \(first.frameBytes) bytes of JSON (+ \(header)-byte WebSocket header); Delivery \(first.deliveryBytes) bytes on `\(Subjects.inbox(instance: "<instance>"))` (one per event, slots of every user read from `\(PresenceKeys.users(instance: "<instance>"))`)")
            lines.append("- writes/s = frames received by all clients ÷ (first publish of the burst → last frame received), summed over the bursts")
            lines.append("- CPU during the bursts (user + system, /proc/<pid>/stat), per socket write: " + delivery.map(Self.cpuLine).joined(separator: "; "))
            if let ceiling { lines.append("- " + Self.ceilingLine(ceiling)) }
            lines.append("- ≥ 500 k socket writes/s: **\(Self.verdict(first.complete && first.burstRate >= Self.targetWritesPerSecond))** (\(PipelineBench.thousands(first.burstRate)) writes/s, \(first.label); the clients' reads compete with the notifier for the same 2 cores)")
        }
        for run in delivery {
            let exact = run.complete && run.perSocketMin == run.events && run.perSocketMax == run.events
                && Int(run.deliveriesIn) == run.events && Int(run.framesWritten) == run.events * run.sockets
                && run.droppedNoSocket == 0 && run.droppedClosing == 0 && run.undecodable == 0
            lines.append("- \(run.label): every socket got exactly one frame per event, and the notifier's counters agree "
                + "(inbox deliveries = \(run.events) events, frames written = \(run.events) × \(run.sockets)): **\(exact ? "yes" : "NO")**"
                + (run.closedByServer > 0 ? "; sockets closed by the server: \(run.closedByServer)" : "")
                + (run.complete ? "" : "; frames were missing 30 s after a publish"))
        }
        lines.append("- frame encoded once per Delivery (code): `InboxDispatcher.dispatch` decodes the Delivery once and renders `ServerFrame.event` once into one `ByteBuffer`; "
            + "`SessionRegistry.deliver` groups the slots' sockets by event loop and hands each loop that same buffer; `WebSocketSession.deliver` writes it as the frame payload. "
            + "NIO's `WebSocketFrameEncoder` prepends the header in place only when it owns the buffer uniquely, so with a shared payload it writes a separate 2–10 byte header per socket and the payload bytes are never copied")
        return lines
    }

    /// The notifier's and the clients' CPU per write, and what the notifier's cost alone
    /// would allow per core (an upper bound: it ignores the contention the clients add).
    static func cpuLine(_ run: NotifierDeliveryPhase.Run) -> String {
        let frames = Double(run.burstEvents * run.sockets)
        guard frames > 0, run.notifierCPUSeconds > 0 else { return "\(run.label): not measured" }
        let notifierUs = run.notifierCPUSeconds / frames * 1e6
        let benchUs = run.benchCPUSeconds / frames * 1e6
        return String(format: "%@: notifier %.2f µs (≈ %@ writes per notifier CPU-second), clients + publisher %.2f µs; of the %.1f s window the notifier used %.2f core-seconds, the bench %.2f",
                      run.label, notifierUs, PipelineBench.thousands(1e6 / notifierUs), benchUs, run.burstWallSeconds, run.notifierCPUSeconds, run.benchCPUSeconds)
    }

    static func ceilingLine(_ result: NotifierWriteCeiling.Result) -> String {
        String(format: "kernel ceiling on this machine: one thread `writev`-ing the same frame to each of %d connected loopback TCP sockets (never read, no event loop): %@ writes/s, %.2f µs CPU per write",
               result.sockets, PipelineBench.thousands(result.writesPerSecond), result.cpuSeconds / Double(result.writes) * 1e6)
    }

    static func deliverySummary(_ run: NotifierDeliveryPhase.Run) -> String {
        let singles = run.singleEventMs.map { String(format: "%.1f", $0) }.joined(separator: ", ")
        let bursts = run.burstRates.map { PipelineBench.thousands($0) }.joined(separator: ", ")
        return """
            single events, publish → last frame ms: [\(singles)]
            bursts of writes/s: [\(bursts)] → \(PipelineBench.thousands(run.burstRate)) writes/s overall
            \(cpuLine(run))
            frames per socket: min \(run.perSocketMin), max \(run.perSocketMax), expected \(run.events)
            notifier /metrics: inbox deliveries +\(Int(run.deliveriesIn)), frames written +\(Int(run.framesWritten)) (expected \(run.events * run.sockets)), \
            dropped no-socket +\(Int(run.droppedNoSocket)), closing +\(Int(run.droppedClosing)), undecodable +\(Int(run.undecodable))
            """
    }

    /// Appends `block` to the `## Notifier` section of `path`: at the end of that section
    /// when it exists, else as a new section at the end of the file. Only inserts.
    static func append(_ block: String, to path: String) throws {
        let heading = "## Notifier"
        let url = URL(fileURLWithPath: path)
        var text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        if let section = text.range(of: "\n" + heading + "\n") {
            let end = text.range(of: "\n## ", range: section.upperBound..<text.endIndex)?.lowerBound ?? text.endIndex
            let needsBreak = text[..<end].hasSuffix("\n\n") ? "" : "\n"
            text.insert(contentsOf: needsBreak + block, at: end)
        } else {
            text += (text.hasSuffix("\n\n") || text.isEmpty ? "" : (text.hasSuffix("\n") ? "\n" : "\n\n")) + heading + "\n\n" + block
        }
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
}
