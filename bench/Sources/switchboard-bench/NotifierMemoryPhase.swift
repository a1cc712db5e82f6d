import Foundation

/// Phase 1 of `switchboard-bench notifier`: resident memory of the notifier with N idle
/// WebSockets (each past its hello frame, its user registered in `presence:<instance>`),
/// at N = `--sockets` and then as close to `--max-sockets` as the file-descriptor limits let.
struct NotifierMemoryPhase {
    /// One measured N.
    struct Point {
        var sockets: Int
        var residentBytes: Int
        var connectSeconds: Double
        /// (RSS with N sockets − RSS before any) / N.
        var bytesPerSocket: Double
    }

    struct Result {
        var baselineBytes: Int
        var points: [Point]
        var requestedMax: Int
        /// Why the largest N is below `requestedMax`, when it is.
        var ceiling: String?
        var failed: Int
        var firstError: String?
        /// Idle sockets the server closed during the phase (should be 0).
        var closedByServer: Int
    }

    /// File descriptors left free in the notifier: the NATS and Redis reconnects and the
    /// bench's own /readyz and /metrics probes.
    static let notifierFDReserve = 32
    /// File descriptors left free in the bench: its Redis and HTTP probes.
    static let benchFDReserve = 64

    let env: PipelineEnvironment
    let notifierPath: String
    let secretFile: URL
    let tokens: [(user: String, token: String)]
    let options: NotifierBench.Tuning

    func run(sockets: Int, maxSockets: Int) throws -> Result {
        let notifier = try NotifierInstance(executable: notifierPath, instanceID: "bench-mem", env: env, secretFile: secretFile,
                                            maxConnections: maxSockets + 16, eventLoopThreads: options.notifierThreads)
        defer { notifier.stop() }
        try notifier.waitReady()
        usleep(UInt32(options.settleSeconds * 1e6))
        let baseline = notifier.residentBytes
        let notifierRoom = notifier.fileLimit - notifier.openFileDescriptors - Self.notifierFDReserve
        let benchRoom = FileLimits.current.soft - FileLimits.openNow - Self.benchFDReserve
        let reachable = min(maxSockets, notifierRoom, benchRoom, tokens.count)
        var ceiling: String?
        if reachable < maxSockets {
            ceiling = "file descriptors: the notifier may open \(notifier.fileLimit) (it had \(notifier.openFileDescriptors) open before any socket), "
                + "the bench \(FileLimits.current.soft) (one client socket each); largest N within both with headroom = \(reachable)"
        }
        print(String(format: "notifier %@ (pid %d): RSS %.1f MB before any socket; fd limit %d; room for %d sockets", notifier.instanceID,
                     notifier.process.pid, Double(baseline) / 1_048_576, notifier.fileLimit, reachable))

        let fleet = NotifierClientFleet(threads: options.clientThreads, port: Int(notifier.port), socketsPerAddress: options.socketsPerAddress)
        defer { fleet.shutdown() }
        var points: [Point] = []
        var failed = 0
        var firstError: String?
        for target in Array(Set([min(sockets, reachable), reachable])).sorted() where target > fleet.count {
            let opened = fleet.open(Array(tokens[fleet.count..<target]), concurrency: options.connectConcurrency)
            failed += opened.failed
            firstError = firstError ?? opened.firstError
            if opened.failed > 0 {
                print("  \(opened.failed) of \(target) sockets failed to open: \(opened.firstError ?? "?")")
            }
            // One socket per user: the presence hash must hold every open socket's user.
            try notifier.waitPresence(users: fleet.count)
            usleep(UInt32(options.settleSeconds * 1e6))
            let rss = notifier.residentBytes
            let point = Point(sockets: fleet.count, residentBytes: rss, connectSeconds: opened.seconds,
                              bytesPerSocket: Double(rss - baseline) / Double(max(1, fleet.count)))
            points.append(point)
            print(String(format: "  %d idle sockets (opened in %.1f s, %d registered in presence): RSS %.1f MB, %.2f KB per socket",
                         point.sockets, point.connectSeconds, point.sockets, Double(rss) / 1_048_576, point.bytesPerSocket / 1024))
            if opened.failed > 0 {
                ceiling = ceiling ?? "sockets failed to open at \(fleet.count): \(opened.firstError ?? "?")"
                break
            }
        }
        return Result(baselineBytes: baseline, points: points, requestedMax: maxSockets, ceiling: ceiling, failed: failed,
                      firstError: firstError, closedByServer: fleet.closedByServer)
    }
}
