import ArgumentParser
import CPeerClient
import Foundation
import SwitchboardHarness

/// `switchboard-bench peer`: Switchboard side by side with nchan (nginx's pub/sub module) on
/// this machine, in one invocation: the same sockets, workloads, rates, payload and load client
/// for both; per point the delivered frames, losses, order, latency, and the CPU and context
/// switches of every server process (bench/README.md).
struct PeerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Peer comparison: Switchboard and nchan under the same WebSocket load (rooms of 5 and broadcast over a rate ladder)."
    )

    @Option(help: "WebSocket sockets per system (one user each).") var sockets = 5000
    @Option(help: "Members of each room in the rooms workload (--sockets must be a multiple).") var roomSize = 5
    @Option(help: "Workloads to run, comma-separated: rooms, broadcast.") var workloads = "rooms,broadcast"
    @Option(help: "Events/s of the rooms points, comma-separated.") var roomsRates = "1000,2000,5000,10000"
    @Option(help: "Events/s of the broadcast points, comma-separated.") var broadcastRates = "10,20"
    @Option(help: "Broadcast points after the ladder, each --search-factor × the previous, until one is not sustained (0: none).") var searchSteps = 4
    @Option(help: "Rate factor between search points.") var searchFactor = 1.5
    @Option(help: "Seconds before each point's measured window (not in CPU, rate or latency).") var warmupSeconds = 2.0
    @Option(help: "Measured seconds of each point.") var seconds = 10.0
    @Option(help: "Seconds of rest between points.") var pauseSeconds = 1.0
    @Option(help: "Bytes of each event's text (the frames are about 200 bytes more).") var textBytes = 200
    @Option(help: "Systems to run, comma-separated, in this order: nchan, switchboard.") var systems = "nchan,switchboard"
    @Option(help: "Switchboard notifier processes (users alternate between them).") var notifiers = 2
    @Option(help: "Event-loop threads of each notifier (default: the machine's cores shared among the notifiers, at least one each).") var notifierThreads: Int?
    @Flag(help: "Switchboard's clients reach nats-server over TLS (a test CA and certificate made with openssl).") var natsTls = false
    @Option(help: "WebSocket handshakes in flight while connecting.") var connectConcurrency = 200
    @Option(help: "Folder with the stream definitions.") var streamsDir = "streams"
    @Option(help: "Folder with the fanout and notifier executables (default: the root package's build of the same configuration).") var binDir: String?
    @Option(help: "Markdown file the results are appended to (under '## Peer comparison: nchan').") var results = "bench/RESULTS.md"
    @Option(help: "Folder the SVG charts are written to.") var chartDir = "bench"
    @Flag(help: "Do not append to the results file nor write charts.") var noResults = false

    func validate() throws {
        guard sockets > 0, roomSize > 0, sockets % roomSize == 0 else { throw ValidationError("--sockets must be a positive multiple of --room-size") }
        guard seconds > 0, warmupSeconds >= 0, pauseSeconds >= 0, textBytes >= 64, notifiers > 0, connectConcurrency > 0, searchSteps >= 0, searchFactor > 1 else {
            throw ValidationError("--seconds, --notifiers, --connect-concurrency must be positive, --text-bytes ≥ 64, --search-factor > 1")
        }
        _ = try selectedWorkloads()
        _ = try selectedSystems()
        _ = try rates(roomsRates)
        _ = try rates(broadcastRates)
    }

    private func selectedWorkloads() throws -> [PeerWorkload] {
        try workloads.split(separator: ",").map { name in
            switch name.trimmingCharacters(in: .whitespaces) {
            case "rooms": PeerWorkload(kind: .rooms(size: roomSize), sockets: sockets)
            case "broadcast": PeerWorkload(kind: .broadcast, sockets: sockets)
            default: throw ValidationError("--workloads: unknown workload '\(name)' (rooms, broadcast)")
            }
        }
    }

    private func selectedSystems() throws -> [String] {
        try systems.split(separator: ",").map { name in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard ["nchan", "switchboard"].contains(trimmed) else { throw ValidationError("--systems: unknown system '\(name)' (nchan, switchboard)") }
            return trimmed
        }
    }

    private func rates(_ list: String) throws -> [Double] {
        try list.split(separator: ",").map {
            guard let rate = Double($0.trimmingCharacters(in: .whitespaces)), rate > 0 else { throw ValidationError("bad rate '\($0)'") }
            return rate
        }
    }

    func run() throws {
        // One line at a time, also into a pipe or a log file: a run takes minutes.
        pc_line_buffer_stdout()
        let header = RunHeader.begin("peer", program: "switchboard-bench peer")
        let fileLimit = EndToEndSetup.raiseFileLimit()
        guard sockets + 1000 < fileLimit else { throw PeerBenchError.setup("\(sockets) sockets need more open files than the limit \(fileLimit)") }

        let binDirectory = binDir.map { URL(fileURLWithPath: $0) } ?? ServiceExecutables.directory
        let runner = PeerPointRunner(warmupSeconds: warmupSeconds, seconds: seconds)
        var all: [PeerPointResult] = []
        var versions: [String] = []
        var highest: [(system: String, result: PeerPointResult?)] = []
        var frameSizes: [String] = []
        var nextPoint: UInt32 = 1
        // The notifiers share this machine's cores: one loop per core each would put twice
        // as many loops as cores on it, and the wake-ups between them cost CPU at every rate
        // (RESULTS, 2026-12-07T19:55Z).
        let loopsPerNotifier = notifierThreads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / notifiers)
        for name in try selectedSystems() {
            print("\n# \(name): starting")
            let system: any PeerSystem = name == "nchan"
                ? try NchanSystem(maxSockets: sockets, textLength: textBytes)
                : try SwitchboardSystem(.init(sockets: sockets, roomSize: roomSize, notifiers: notifiers, notifierThreads: loopsPerNotifier, natsTLS: natsTls,
                                              textLength: textBytes, streamsDir: streamsDir, binDirectory: binDirectory))
            defer { system.stop() }
            versions.append("\(system.name): \(system.versions)")
            print("\(system.name): \(system.versions)")
            var client: PeerLoadClient?
            defer { client?.stop() }
            var sustainedBroadcast: PeerPointResult?
            for workload in try selectedWorkloads() {
                let targets = try system.targets(for: workload)
                if client?.targets != targets {
                    client?.stop()
                    let started = ContinuousClock.now
                    let fresh = try PeerLoadClient(targets: targets, concurrency: connectConcurrency)
                    client = fresh
                    try fresh.waitConnected(timeout: .seconds(180))
                    try system.waitSubscribed(sockets: sockets, timeout: .seconds(120))
                    print("\(system.name): \(sockets) sockets open and subscribed in " + String(format: "%.1f s", (ContinuousClock.now - started).seconds))
                }
                guard let client else { continue }
                try prime(system: system, workload: workload, client: client, point: &nextPoint)
                var ladder = try rates(workload.kind == .broadcast ? broadcastRates : roomsRates)
                var index = 0
                var searching = 0
                while index < ladder.count {
                    let rate = ladder[index]
                    index += 1
                    let result = try runner.run(point: nextPoint, rate: rate, workload: workload, system: system, client: client)
                    nextPoint += 1
                    print(Self.summary(result))
                    all.append(result)
                    if workload.kind == .broadcast, result.saturation == nil,
                       result.deliveredFramesPerSecond > (sustainedBroadcast?.deliveredFramesPerSecond ?? 0) {
                        sustainedBroadcast = result
                    }
                    // The search continues past the ladder while points are sustained.
                    if workload.kind == .broadcast, index == ladder.count, searching < searchSteps, result.saturation == nil {
                        ladder.append((rate * searchFactor).rounded())
                        searching += 1
                    }
                    usleep(UInt32(pauseSeconds * 1e6))
                }
            }
            let counters = client?.counters ?? pc_counters()
            let meanFrame = counters.frames > 0 ? Int(counters.payload_bytes / counters.frames) : 0
            frameSizes.append("\(system.name) \(meanFrame) bytes")
            print("\(system.name): load client read \(counters.frames) frames (\(meanFrame) payload bytes on average) in \(counters.reads) reads; first socket error: \(client?.firstError.isEmpty == false ? client!.firstError : "none")")
            if try selectedWorkloads().contains(where: { $0.kind == .broadcast }) { highest.append((system.name, sustainedBroadcast)) }
        }

        let report = PeerReport(
            date: Date(), command: header.command, machine: Machine.description, loadAtStart: header.loadAtStart, loadAtEnd: Machine.loadAverage,
            versions: versions, sockets: sockets, warmupSeconds: warmupSeconds, seconds: seconds, textLength: textBytes,
            frameSizes: frameSizes, results: all, highestSustained: highest
        )
        let stamp = EndToEndReport.fileStamp(report.date)
        let charts = ["peer-cpu-\(stamp).svg", "peer-p99-\(stamp).svg"]
        let text = report.markdown(charts: noResults ? nil : charts)
        print("\n" + text)
        if !noResults {
            try FileManager.default.createDirectory(atPath: chartDir, withIntermediateDirectories: true)
            try report.cpuChart().write(toFile: "\(chartDir)/\(charts[0])", atomically: true, encoding: .utf8)
            try report.latencyChart().write(toFile: "\(chartDir)/\(charts[1])", atomically: true, encoding: .utf8)
            try PipelineBench.appendResults(text, to: results, heading: "## Peer comparison: nchan")
            print("appended to \(results); charts \(charts.map { "\(chartDir)/\($0)" }.joined(separator: ", "))")
        }
    }

    /// Publishes one event per channel until every socket got its channel's event (Switchboard
    /// drops events published before the fan-out saw a user's presence), bounded.
    private func prime(system: any PeerSystem, workload: PeerWorkload, client: PeerLoadClient, point: inout UInt32) throws {
        let rate = Double(max(10, min(2000, workload.channelCount * 2)))
        let primer = PeerPointRunner(warmupSeconds: 0, seconds: Double(workload.channelCount) / rate, quietSeconds: 2, maxDrainSeconds: 15)
        let deadline = ContinuousClock.now + .seconds(90)
        while true {
            let result = try primer.run(point: point, rate: rate, workload: workload, system: system, client: client)
            point += 1
            if result.lost == 0 { return }
            guard ContinuousClock.now < deadline else {
                throw PeerBenchError.setup("\(system.name): \(result.lost) of \(result.expected) priming frames still missing after 90 s; first socket error: \(client.firstError)")
            }
            print("\(system.name): priming \(workload.shortLabel): \(result.lost) of \(result.expected) frames missing, again (stale \(result.stale), misrouted \(result.misrouted), dup \(result.duplicates), publish failures \(result.publishFailures), client frames \(client.counters.frames))")
        }
    }

    private static func summary(_ r: PeerPointResult) -> String {
        "\(r.system) \(r.workload.shortLabel) \(Int(r.rate)) ev/s: "
            + String(format: "published %.0f ev/s, %.0f frames/s (offered %.0f), lost %d, dup %d, order %d, p50 %.2f p99 %.2f max %.2f ms, server CPU %.3f s = %.4f s / 1000 frames, %.1f ctx sw / event, client CPU %.2f s; ",
                     r.publishedRate, r.deliveredFramesPerSecond, r.offeredFramesPerSecond, r.lost, r.duplicates, r.orderViolations,
                     Double(r.p50Ns) / 1e6, Double(r.p99Ns) / 1e6, Double(r.maxNs) / 1e6, r.serverCPUSeconds, r.cpuPerThousandFrames,
                     r.contextSwitchesPerEvent, r.clientCPUSeconds)
            + (r.saturation ?? "sustained")
    }
}
