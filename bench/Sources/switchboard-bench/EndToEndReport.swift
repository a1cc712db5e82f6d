import Foundation
import Histogram
import SwitchboardContracts

/// The tables, verdicts and charts of one `switchboard-bench fanout` run.
struct EndToEndReport {
    let date: Date
    let command: String
    let load: String
    let workload: String
    let topology: EndToEndTopology
    let workloadModel: PipelineWorkload
    let rate: Int
    let seconds: Double
    let warmup: Double
    let notifiers: Int
    let sockets: Int
    let outcomes: [EndToEndOutcome]

    static func fileStamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: date)
    }

    private var switchboard: EndToEndOutcome? { outcomes.first { $0.design == .switchboard } }
    private func outcome(_ design: EndToEndDesign) -> EndToEndOutcome? { outcomes.first { $0.design == design } }

    private static let percentiles: [(String, Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
    private static func ms(_ ns: UInt64) -> String { PipelineBench.ms(ns) }
    private static func ratio(_ value: Double, _ base: Double) -> String {
        guard base > 0 else { return "–" }
        return String(format: "%.2f×", value / base)
    }

    /// The rows of the latency table (and chart): label, histogram.
    private var latencyRows: [(String, Histogram<UInt64>)] {
        var rows: [(String, Histogram<UInt64>)] = []
        if let switchboard {
            rows.append(("Switchboard → WebSocket client", switchboard.receivers.histogram))
            if let inbox = switchboard.inbox { rows.append(("Switchboard → notifier inbox (NATS)", inbox.histogram)) }
        }
        if let perUser = outcome(.perUser) { rows.append(("per-user subjects → notifier (NATS)", perUser.receivers.histogram)) }
        if let perChannel = outcome(.perChannel) { rows.append(("per-channel subs → notifier (NATS)", perChannel.receivers.histogram)) }
        return rows
    }

    func markdown(latencyChart: String?, messagesChart: String?) -> String {
        var lines: [String] = []
        lines.append("### \(ISO8601DateFormatter().string(from: date))")
        lines.append("")
        lines.append("- machine: \(Machine.description); load average at start \(load)")
        lines.append("- command: `\(command)`")
        lines.append("- workload: \(workload)")
        lines.append(String(format: "- each design in turn: %d events/s paced for %.0f s into `CHAT_EVENTS` (ChatEvent protobuf, send instant in the text; first %.0f s excluded from latency); same servers, users and channel sizes. Switchboard = 1 release `fanout` + %d release `notifier`s + %d WebSocket clients in the bench (JWT each); baselines = an in-bench relay (per partition: fetch, publish, flush, ack-all: the fan-out's I/O shape) and %d simulated notifiers on raw NATS connections.", rate, seconds, warmup, notifiers, sockets, notifiers))
        lines.append("- **measurement points differ**: baselines are measured at the simulated notifier's NATS subscription (no WebSocket hop); Switchboard is measured at the WebSocket client *and* at the notifiers' inbox subject (a bench tap on `\(Subjects.allInboxes)`), and the ratios below use the inbox figure (like for like).")
        lines.append("")
        lines.append("| publish → receive, ms | p50 | p90 | p99 | p99.9 | max | samples |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for (name, h) in latencyRows {
            lines.append("| \(name) | " + Self.percentiles.map { Self.ms(h.valueAtPercentile($0.1)) }.joined(separator: " | ") + " | \(Self.ms(h.max)) | \(h.totalCount) |")
        }
        lines.append("")
        lines.append("| delivery | events sent (achieved/s, max behind) | receipts expected | received | lost | duplicates | receipts/s |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for o in outcomes {
            let what = o.design == .switchboard ? "Switchboard (WebSocket frames)" : "\(o.design.rawValue) (NATS messages)"
            let perSecond = o.receiveSeconds > 0 ? Double(o.receivers.receipts) / o.receiveSeconds : 0
            lines.append("| \(what) | \(o.sent) (\(String(format: "%.0f", o.achievedRate)), \(String(format: "%.0f", o.maxBehindMs)) ms) | \(o.expected) | \(o.receivers.receipts) | \(o.lost) | \(o.receivers.duplicates) | \(PipelineBench.thousands(perSecond)) |")
            if let inbox = o.inbox {
                lines.append("| Switchboard (inbox deliveries, tap) | | \(o.inboxExpected) | \(inbox.receipts) | \(o.inboxLost) | \(inbox.duplicates) | |")
            }
        }
        lines.append("")
        lines.append("| NATS cost | hop msgs published / event | hop msgs delivered / event | /varz in_msgs / event | /varz out_msgs / event | subscriptions held | nats-server CPU s | routers' CPU s | p99 at NATS, ms |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for o in outcomes {
            let sent = Double(max(1, o.sent))
            let p99 = o.design == .switchboard ? (o.inbox?.histogram.valueAtPercentile(99) ?? 0) : o.receivers.histogram.valueAtPercentile(99)
            let routers = o.design == .switchboard ? String(format: "%.1f (fanout + notifiers)", o.servicesCPU) : String(format: "%.1f (whole bench)", o.benchCPU)
            lines.append("| \(o.design.rawValue) | " + String(format: "%.2f | %.2f | %.2f | %.2f", Double(o.hopPublished) / sent, Double(o.hopDelivered) / sent, Double(o.varzIn) / sent, Double(o.varzOut) / sent)
                + " | \(o.subscriptions) | " + String(format: "%.1f", o.natsCPU) + " | \(routers) | \(Self.ms(p99)) |")
        }
        if let sw = switchboard {
            let swSent = Double(max(1, sw.sent))
            for o in outcomes where o.design != .switchboard {
                let sent = Double(max(1, o.sent))
                let p99 = Double(o.receivers.histogram.valueAtPercentile(99))
                let swP99 = Double(sw.inbox?.histogram.valueAtPercentile(99) ?? 0)
                lines.append("| **\(o.design.rawValue) ÷ Switchboard** | " + [
                    Self.ratio(Double(o.hopPublished) / sent, Double(sw.hopPublished) / swSent),
                    Self.ratio(Double(o.hopDelivered) / sent, Double(sw.hopDelivered) / swSent),
                    Self.ratio(Double(o.varzIn) / sent, Double(sw.varzIn) / swSent),
                    Self.ratio(Double(o.varzOut) / sent, Double(sw.varzOut) / swSent),
                    Self.ratio(Double(o.subscriptions), Double(sw.subscriptions)),
                    Self.ratio(o.natsCPU / sent, sw.natsCPU / swSent) + " (per event)",
                    "",
                    Self.ratio(p99, swP99),
                ].joined(separator: " | ") + " |")
            }
        }
        lines.append("")
        lines.append("- hop = the messages after JetStream: Switchboard's `Delivery`s to instance inboxes (published count from the fan-out's `switchboard_fanout_deliveries_total`), the relay's `user.<id>` or `chat.channel.<id>` publishes; delivered = what reached the notifiers. /varz counts are whole-server deltas over the phase (they include the upstream JetStream publishes, acks and fetch requests, the same for every design; the bench's inbox tap is subtracted). Subscriptions held = the design's subjects in `/subsz` (`\(Subjects.allInboxes)`, `user.*`, `chat.channel.*`).")
        lines.append("")
        lines.append(contentsOf: bucketTable())
        lines.append("")
        lines.append(contentsOf: verdicts())
        if let sw = switchboard {
            lines.append("- Switchboard notifiers (their /metrics over the phase): \(sw.notifierFrames) frames written, \(sw.notifierDropped) recipient deliveries dropped (\(sw.notifierDroppedClosing) because the socket was closing), \(sw.notifierSlowConsumerCloses) sockets closed as slow consumers (4008: outbound buffer over its bound), \(sw.socketsClosed) close frames seen by the clients (\(sw.closedHeartbeat) × 4001 heartbeat timeout, \(sw.closedSlowConsumer) × 4008 slow consumer)")
        }
        for o in outcomes where o.relayErrors > 0 || !o.drained || o.socketsClosed > 0 || o.receivers.unparsable > 0 || o.unexpected > 0 {
            lines.append("- \(o.design.rawValue): \(o.relayErrors) relay errors, drained \(o.drained ? "yes" : "NO"), \(o.socketsClosed) sockets closed by a notifier, \(o.receivers.unparsable) unparsable receipts, \(o.unexpected) receipts beyond the expected ones")
        }
        if let latencyChart, let messagesChart {
            lines.append("")
            lines.append("![latency percentiles per design](\(latencyChart))")
            lines.append("![NATS messages per event by channel size](\(messagesChart))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private var bucketNames: [String] {
        var lower = 1
        return EndToEndPhases.bucketBounds.map { bound in
            defer { lower = bound == Int.max ? bound : bound + 1 }
            return bound == Int.max ? "> \(lower - 1)" : "\(lower)–\(bound)"
        }
    }

    /// Measured hop messages delivered per event, by the size of the event's channel.
    private func bucketValues(_ o: EndToEndOutcome) -> [Double?] {
        zip(o.bucketMessages, o.bucketEvents).map { $1 > 0 ? Double($0) / Double($1) : nil }
    }

    private func bucketTable() -> [String] {
        var lines = ["| hop messages delivered per event, by channel size (members) | " + bucketNames.joined(separator: " | ") + " |"]
        lines.append("|---|" + bucketNames.map { _ in "---:" }.joined(separator: "|") + "|")
        if let sw = switchboard { lines.append("| events in bucket | " + sw.bucketEvents.map(String.init).joined(separator: " | ") + " |") }
        for o in outcomes {
            lines.append("| \(o.design.rawValue) | " + bucketValues(o).map { $0.map { String(format: "%.2f", $0) } ?? "–" }.joined(separator: " | ") + " |")
        }
        return lines
    }

    private func verdicts() -> [String] {
        guard let sw = switchboard else { return [] }
        var lines: [String] = []
        let p99 = sw.receivers.histogram.valueAtPercentile(99)
        let targetShape = sockets >= 10_000 && notifiers == 2 && rate >= 20_000 && workloadModel.medianChannelSize == 50
        let shape = "this run: \(sockets) sockets, \(notifiers) notifiers, \(rate) events/s requested (\(String(format: "%.0f", sw.achievedRate)) achieved), median channel \(workloadModel.medianChannelSize)"
        let met = p99 <= 10_000_000 && sw.lost == 0 && sw.achievedRate >= Double(rate) * 0.98
        lines.append("- target p99 ≤ 10 ms and zero lost events at 10 k sockets, 2 notifiers, 20 k events/s, median channel 50 (\(shape)): "
            + (targetShape ? "**\(met ? "met" : "NOT met")**" : "**not the target shape** (for reference: \(met ? "p99 ≤ 10 ms, no loss" : "p99 > 10 ms or loss"))")
            + " — p99 \(Self.ms(p99)) ms, \(sw.lost) lost, \(sw.receivers.duplicates) duplicates")
        let exact = sw.hopPublished == sw.expectedInstanceDeliveries
        lines.append("- target NATS messages per event = instances with an online recipient: **\(exact ? "met" : "NOT met")** — "
            + String(format: "%.3f published per event, workload says %.3f (%d vs %d)", Double(sw.hopPublished) / Double(max(1, sw.sent)),
                     Double(sw.expectedInstanceDeliveries) / Double(max(1, sw.sent)), sw.hopPublished, sw.expectedInstanceDeliveries))
        if let perUser = outcome(.perUser) {
            let bucket = EndToEndPhases.bucket(ofSize: 50)
            let swValue = bucketValues(sw)[bucket] ?? 0
            let puValue = bucketValues(perUser)[bucket] ?? 0
            let factor = swValue > 0 ? puValue / swValue : 0
            let overall = Double(perUser.hopPublished) / Double(max(1, perUser.sent)) / (Double(sw.hopPublished) / Double(max(1, sw.sent)))
            lines.append("- target per-user baseline sends ≥ 10× more at median channel size 50: **\(factor >= 10 ? "met" : "NOT met")** — "
                + String(format: "%.1f× in the %@-member bucket (%.2f vs %.2f messages per event), %.1f× over all events; with %.0f %% of users online the factor is about online members ÷ instances", factor, bucketNames[bucket], puValue, swValue, overall, workloadModel.shape.onlineFraction * 100))
        }
        return lines
    }

    func latencyChart() -> String {
        let rows = latencyRows
        let groups = Self.percentiles.map(\.0) + ["max"]
        let series = rows.enumerated().map { index, row in
            SVGChart.Series(name: row.0, color: SVGChart.palette[index % SVGChart.palette.count],
                            values: Self.percentiles.map { Double(row.1.valueAtPercentile($0.1)) / 1e6 } + [Double(row.1.max) / 1e6])
        }
        return SVGChart(title: "publish → receive latency, \(rate) events/s, \(sockets) sockets, \(notifiers) notifiers", yLabel: "ms (log scale)",
                        groups: groups, series: series,
                        note: "baselines measured at the notifier's NATS subscription; Switchboard at the WebSocket client and at the inbox").render()
    }

    func messagesChart() -> String {
        let colors: [EndToEndDesign: String] = [.switchboard: SVGChart.palette[0], .perUser: SVGChart.palette[2], .perChannel: SVGChart.palette[3]]
        let series = outcomes.map { o in
            SVGChart.Series(name: o.design.rawValue, color: colors[o.design] ?? "#888", values: bucketValues(o))
        }
        return SVGChart(title: "NATS messages delivered per event after JetStream, by channel size", yLabel: "messages / event (log scale)",
                        groups: bucketNames.map { "\($0) members" }, series: series,
                        note: String(format: "%.0f %% of users online over %d notifiers; measured at the receivers", workloadModel.shape.onlineFraction * 100, notifiers)).render()
    }

    static func appendResults(_ block: String, to path: String) throws {
        try PipelineBench.appendResults(block, to: path, heading: "## End-to-end fan-out")
    }
}
