import ArgumentParser
import FanoutService
import Foundation
import NotifierService
import SwitchboardContracts
import SwitchboardHarness

/// `switchboard-bench fanout`: the whole path, publish → JetStream → `fanout` → notifier inbox
/// → WebSocket frame, with real processes (nats-server -js, redis-server, one `fanout`, K
/// `notifier`s) and N WebSocket clients in the bench; then the two designs a user would
/// otherwise pick (per-user subjects, per-channel subscriptions) on the same servers, events
/// and users, measured at their simulated notifiers' NATS subscriptions.
struct EndToEndBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "End-to-end fan-out: N WebSocket clients on K notifiers at a fixed event rate, against per-user and per-channel baselines (real servers)."
    )

    @OptionGroup var workloadOptions: WorkloadOptions
    @Option(help: "Fraction of users online (connected); each online user opens one WebSocket.") var onlineFraction = 0.5
    @Option(help: "Notifier processes (K); users are spread over them.") var notifiers = 2
    @Option(help: "Events/s published to CHAT_EVENTS in each phase (the target is 20 000; see bench/README.md).") var rate = 1_000
    @Option(help: "Seconds of each phase.") var seconds = 10.0
    @Option(help: "Seconds at the start of each phase excluded from the latency histograms.") var warmupSeconds = 1.0
    @Option(help: "Event-loop threads of the bench's WebSocket clients.") var clientThreads = 2
    @Option(help: "Event-loop threads of each notifier.") var notifierThreads = 1
    @Option(help: "WebSocket handshakes in flight while connecting.") var connectConcurrency = 200
    @Option(help: "Fetch batch of the baseline relays (the fan-out's default is 256).") var fetchBatch = 256
    @Option(help: "Designs to run, comma-separated: switchboard, per-user, per-channel.") var designs = "per-user,per-channel,switchboard"
    @Option(help: "Folder with the stream definitions.") var streamsDir = "streams"
    @Option(help: "Folder with the fanout and notifier executables (default: the root package's build of the same configuration).") var binDir: String?
    @Option(help: "Markdown file the results are appended to (under '## End-to-end fan-out').") var results = "bench/RESULTS.md"
    @Option(help: "Folder the SVG charts are written to.") var chartDir = "bench"
    @Flag(help: "Do not append to the results file nor write charts.") var noResults = false
    @Flag(help: "Keep the temp directory with the server, fan-out and notifier logs.") var keepLogs = false

    func validate() throws {
        guard notifiers > 0, rate > 0, seconds > 0, clientThreads > 0, notifierThreads > 0, fetchBatch > 0 else {
            throw ValidationError("notifiers, rate, seconds, threads and fetch batch must be positive")
        }
        guard (0...1).contains(onlineFraction) else { throw ValidationError("--online-fraction must be within 0...1") }
        guard warmupSeconds >= 0, warmupSeconds < seconds else { throw ValidationError("--warmup-seconds must be ≥ 0 and < --seconds") }
        guard Int(Double(rate) * seconds) < Int(UInt16.max) * 1000 else { throw ValidationError("--rate × --seconds is too large") }
        _ = try selectedDesigns()
    }

    func selectedDesigns() throws -> [EndToEndDesign] {
        let names = designs.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let chosen = try names.map { name -> EndToEndDesign in
            switch name {
            case "switchboard": return .switchboard
            case "per-user": return .perUser
            case "per-channel": return .perChannel
            default: throw ValidationError("--designs: unknown design '\(name)' (switchboard, per-user, per-channel)")
            }
        }
        guard chosen.contains(.switchboard) else { throw ValidationError("--designs must include switchboard (the ratios are against it)") }
        // Baselines first: the fan-out, once started, would consume their events too.
        return EndToEndDesign.allCases.reversed().filter { chosen.contains($0) }
    }

    func run() throws {
        let header = RunHeader.begin("fanout")
        let fdLimit = EndToEndSetup.raiseFileLimit()
        print("open files limit: \(fdLimit)")

        let definitions = try StreamDefinitions(directory: streamsDir)
        let workload = workloadOptions.workload(onlineFraction: onlineFraction, instances: notifiers, partitionCount: definitions.partitionCount)
        let topology = EndToEndTopology(workload)
        guard workload.onlineCount + 200 < fdLimit else {
            throw EndToEndError.setup("\(workload.onlineCount) sockets need more open files than the limit \(fdLimit)")
        }
        let workloadLine = topology.describe(workload)
        print("workload: \(workloadLine)")

        let binDirectory = binDir.map { URL(fileURLWithPath: $0) }
            ?? ServiceExecutables.directory
        let env = try PipelineEnvironment(partitionCount: definitions.partitionCount, keepLogs: keepLogs, monitoring: true)
        defer { env.stop() }
        let setup = EndToEndSetup(env: env, workload: workload, topology: topology, binDirectory: binDirectory)
        defer { setup.stop() }
        print("servers: nats-server \(env.natsURL) (monitoring :\(env.natsMonitorPort ?? 0)), redis-server \(env.redisURL), logs in \(env.directory.path)")
        for (name, result) in try definitions.apply(subjectTransforms: env.jetStream.serverSupportsStreamSubjectTransforms(), { try env.jetStream.applyStream(configJSON: $0) }) { print("stream \(name): \(result)") }

        var t0 = ContinuousClock.now
        try env.loadMembership(workload)
        print(String(format: "published %d memberships to CHAT_MEMBERSHIP in %.1f s", workload.membershipCount, (ContinuousClock.now - t0).seconds))

        t0 = ContinuousClock.now
        try setup.startNotifiers(threads: notifierThreads)
        print(String(format: "%d notifiers ready in %.1f s", notifiers, (ContinuousClock.now - t0).seconds))

        let events = Int(Double(rate) * seconds)
        t0 = ContinuousClock.now
        let fleet = try setup.connectClients(threads: clientThreads, events: events, concurrency: connectConcurrency)
        defer { fleet.shutdown() }
        print(String(format: "%d WebSocket clients connected and registered in presence in %.1f s", fleet.connected, (ContinuousClock.now - t0).seconds))

        let phases = EndToEndPhases(env: env, setup: setup, workload: workload, topology: topology, fleet: fleet,
                                    rate: rate, seconds: seconds, warmupNs: UInt64(warmupSeconds * 1e9), fetchBatch: fetchBatch,
                                    streamsDir: URL(fileURLWithPath: streamsDir).path)
        var outcomes: [EndToEndOutcome] = []
        for design in try selectedDesigns() {
            print("\n# \(design.rawValue): \(rate) events/s for \(seconds) s")
            let outcome = try phases.run(design)
            print(outcome.summary)
            outcomes.append(outcome)
        }

        let report = EndToEndReport(
            date: Date(), command: header.command, load: header.loadAtStart, workload: workloadLine, topology: topology, workloadModel: workload,
            rate: rate, seconds: seconds, warmup: warmupSeconds, notifiers: notifiers, sockets: fleet.connected, outcomes: outcomes
        )
        let stamp = EndToEndReport.fileStamp(report.date)
        let latencyChart = "fanout-latency-\(stamp).svg"
        let messagesChart = "fanout-messages-\(stamp).svg"
        let text = report.markdown(latencyChart: noResults ? nil : latencyChart, messagesChart: noResults ? nil : messagesChart)
        print("\n" + text)
        if !noResults {
            try FileManager.default.createDirectory(atPath: chartDir, withIntermediateDirectories: true)
            try report.latencyChart().write(toFile: "\(chartDir)/\(latencyChart)", atomically: true, encoding: .utf8)
            try report.messagesChart().write(toFile: "\(chartDir)/\(messagesChart)", atomically: true, encoding: .utf8)
            try EndToEndReport.appendResults(text, to: results)
            print("appended to \(results); charts \(chartDir)/\(latencyChart), \(chartDir)/\(messagesChart)")
        }
    }
}

/// Who is online where, derived once from the workload: the online members of each channel,
/// the online users of each instance, and each user's channels.
struct EndToEndTopology {
    let onlineMembers: [[Int]]
    let usersByInstance: [[Int]]
    let channelsOf: [[Int]]

    init(_ workload: PipelineWorkload) {
        onlineMembers = workload.members.map { $0.filter { workload.instanceOf[$0] >= 0 } }
        var byInstance = [[Int]](repeating: [], count: workload.shape.instances)
        for user in 0..<workload.shape.users where workload.instanceOf[user] >= 0 { byInstance[workload.instanceOf[user]].append(user) }
        usersByInstance = byInstance
        var channelsOf = [[Int]](repeating: [], count: workload.shape.users)
        for (channel, members) in workload.members.enumerated() {
            for user in members { channelsOf[user].append(channel) }
        }
        self.channelsOf = channelsOf
    }

    func describe(_ workload: PipelineWorkload) -> String {
        let channels = workload.shape.channels
        let avgDeliveries = Double(workload.deliveries.reduce(0, +)) / Double(channels)
        let avgRecipients = Double(workload.recipients.reduce(0, +)) / Double(channels)
        return String(
            format: "%d channels (median %d members, largest %d), %d users, %d memberships, %d online (one WebSocket each) on %d notifiers; per event on average %.2f instances with a recipient, %.1f online recipients; %d partitions",
            channels, workload.medianChannelSize, workload.largestChannelSize, workload.shape.users, workload.membershipCount,
            workload.onlineCount, workload.shape.instances, avgDeliveries, avgRecipients, workload.shape.partitionCount)
    }
}
