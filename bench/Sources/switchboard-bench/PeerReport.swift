import Foundation

/// The Markdown block and the SVG charts of one `switchboard-bench peer` run.
struct PeerReport {
    var date: Date
    var command: String
    var machine: String
    var loadAtStart: String
    var loadAtEnd: String
    var versions: [String]
    var sockets: Int
    var warmupSeconds: Double
    var seconds: Double
    var textLength: Int
    /// Mean payload bytes of the frames each system's sockets read, as "<system> <n> bytes".
    var frameSizes: [String]
    var results: [PeerPointResult]
    /// Per system, the highest broadcast point that was sustained (nil: none was).
    var highestSustained: [(system: String, result: PeerPointResult?)]

    static let nchan = "nchan", switchboard = "Switchboard"

    /// (workload, rate) in the order they ran, each once.
    private var points: [(workload: PeerWorkload, rate: Double)] {
        var seen: [(PeerWorkload, Double)] = []
        for result in results where !seen.contains(where: { $0.0 == result.workload && $0.1 == result.rate }) {
            seen.append((result.workload, result.rate))
        }
        return seen
    }

    private func result(_ system: String, _ workload: PeerWorkload, _ rate: Double) -> PeerPointResult? {
        results.first { $0.system == system && $0.workload == workload && $0.rate == rate }
    }

    func markdown(charts: [String]?) -> String {
        var lines: [String] = []
        lines.append("### \(ISO8601DateFormatter().string(from: date))")
        lines.append("")
        lines.append("- machine: \(machine); load average at start \(loadAtStart), at end \(loadAtEnd)")
        lines.append("- command: `\(command)`")
        for version in versions { lines.append("- \(version)") }
        lines.append(String(format: "- %d WebSocket sockets per system, one shared load client (C, epoll, one thread); text %d bytes; each point %.0f s warm-up + %.0f s measured (CPU, frames/s and latency from the measured window only)", sockets, textLength, warmupSeconds, seconds)
            + "; mean frame payload: " + frameSizes.joined(separator: ", "))
        lines.append("")
        lines.append("| workload | rate ev/s | offered frames/s | nchan frames/s | Switchboard frames/s | nchan CPU-s / 1 000 frames | Switchboard | **SB ÷ nchan** | p99 nchan ms | p99 Switchboard ms | p99 SB ÷ nchan | ctx sw / event nchan | Switchboard | SB ÷ nchan |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (workload, rate) in points {
            let n = result(Self.nchan, workload, rate), s = result(Self.switchboard, workload, rate)
            let offered = (n ?? s)?.offeredFramesPerSecond ?? 0
            lines.append("| \(workload.label) | \(Self.number(rate)) | \(Self.number(offered)) | \(Self.delivered(n)) | \(Self.delivered(s)) | "
                + "\(Self.cpu(n)) | \(Self.cpu(s)) | **\(Self.ratio(s?.cpuPerThousandFrames, n?.cpuPerThousandFrames))** | "
                + "\(Self.ms(n?.p99Ns)) | \(Self.ms(s?.p99Ns)) | \(Self.ratio(s.map { Double($0.p99Ns) }, n.map { Double($0.p99Ns) })) | "
                + "\(Self.decimal(n?.contextSwitchesPerEvent)) | \(Self.decimal(s?.contextSwitchesPerEvent)) | \(Self.ratio(s?.contextSwitchesPerEvent, n?.contextSwitchesPerEvent)) |")
        }
        let sustained = highestSustained.map { entry in
            "\(entry.system) \(entry.result.map { "\(Self.number($0.deliveredFramesPerSecond)) frames/s (\(Self.number($0.rate)) ev/s)" } ?? "none of the points")"
        }
        lines.append("| broadcast, highest sustained | | | \(sustained.joined(separator: "; ")) | | | | | | | | | | |")
        lines.append("")
        lines.append("Per point (a point is *sustained* when the publisher kept the rate, ≥ 95 % of the offered frames arrived within the window, nothing was lost and the backlog drained within 2 s; otherwise the status says why):")
        lines.append("")
        lines.append("| system | workload | rate ev/s | published ev/s | frames/s | lost | dup | order | p50 ms | p99 ms | max ms | CPU-s / 1 000 frames by process | µs CPU / event | ctx sw / event | client CPU (% of a core) | status |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
        for result in results {
            let perProcess = result.processCPU.map { entry in
                "\(entry.name) \(result.framesInWindow > 0 ? String(format: "%.4f", entry.seconds / Double(result.framesInWindow) * 1000) : "–")"
            }.joined(separator: ", ")
            let perEvent = result.eventsInWindow > 0 ? String(format: "%.0f", result.serverCPUSeconds / Double(result.eventsInWindow) * 1e6) : "–"
            var status = result.saturation.map { "**not sustained**: \($0)" } ?? "sustained"
            if result.stale + result.misrouted + result.publishFailures > 0 {
                status += "; stale \(result.stale), misrouted \(result.misrouted), publish failures \(result.publishFailures)"
            }
            lines.append("| \(result.system) | \(result.workload.shortLabel) | \(Self.number(result.rate)) | \(Self.number(result.publishedRate)) | \(Self.number(result.deliveredFramesPerSecond)) | "
                + "\(result.lost) | \(result.duplicates) | \(result.orderViolations) | \(Self.ms(result.p50Ns)) | \(Self.ms(result.p99Ns)) | \(Self.ms(result.maxNs)) | "
                + "total \(Self.cpu(result)): \(perProcess) | \(perEvent) | \(Self.decimal(result.contextSwitchesPerEvent)) | "
                + String(format: "%.2f s (%.0f %%)", result.clientCPUSeconds, result.clientCorePercent) + " | \(status) |")
        }
        lines.append("")
        lines.append("- server CPU = utime + stime (/proc/PID/stat) of every server process over the measured window; context switches = voluntary + nonvoluntary of every thread (/proc/PID/task/*/status); client CPU = the load client's thread alone (its CPU clock), never counted as server; the publisher runs in the bench process and is not counted either.")
        if let charts {
            lines.append("- charts: " + charts.map { "[\($0)](\($0))" }.joined(separator: ", "))
            lines.append("")
            for chart in charts { lines.append("![\(chart)](\(chart))") }
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    /// Server CPU per 1 000 frames, both systems, one bar pair per point.
    func cpuChart() -> String {
        chart(title: "Server CPU-s per 1 000 delivered frames", yLabel: "CPU-s / 1 000 frames") { $0.cpuPerThousandFrames }
    }

    /// p99 latency in ms, both systems, one bar pair per point.
    func latencyChart() -> String {
        chart(title: "p99 publish → WebSocket frame, ms", yLabel: "p99 ms") { Double($0.p99Ns) / 1e6 }
    }

    private func chart(title: String, yLabel: String, value: (PeerPointResult) -> Double) -> String {
        let groups = points.map { "\($0.workload.kind == .broadcast ? "bcast" : "rooms") \(Self.number($0.rate))" }
        let series = [Self.nchan, Self.switchboard].enumerated().map { index, system in
            SVGChart.Series(name: system, color: SVGChart.palette[index == 0 ? 3 : 0],
                            values: points.map { point in result(system, point.workload, point.rate).map(value).flatMap { $0.isFinite ? $0 : nil } })
        }
        return SVGChart(title: title, yLabel: yLabel, groups: groups, series: series,
                        note: "\(sockets) sockets; rooms = rooms of 5, bcast = one channel; x: events/s; \(machine)").render(width: 900)
    }

    private static func number(_ value: Double) -> String {
        let rounded = Int(value.rounded())
        guard rounded >= 10_000 else { return "\(rounded)" }
        let digits = String(rounded)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { grouped += " " }
            grouped.append(digit)
        }
        return grouped
    }

    private static func delivered(_ result: PeerPointResult?) -> String {
        guard let result else { return "–" }
        return number(result.deliveredFramesPerSecond) + (result.saturation == nil ? "" : " (not sustained)")
    }

    private static func cpu(_ result: PeerPointResult?) -> String {
        guard let value = result?.cpuPerThousandFrames, value.isFinite else { return "–" }
        return String(format: "%.4f", value)
    }

    private static func ms(_ ns: UInt64?) -> String {
        guard let ns else { return "–" }
        return String(format: ns >= 100_000_000 ? "%.0f" : "%.2f", Double(ns) / 1e6)
    }

    private static func decimal(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "–" }
        return String(format: "%.1f", value)
    }

    private static func ratio(_ numerator: Double?, _ denominator: Double?) -> String {
        guard let numerator, let denominator, numerator.isFinite, denominator.isFinite, denominator > 0 else { return "–" }
        return String(format: "%.1f×", numerator / denominator)
    }
}
