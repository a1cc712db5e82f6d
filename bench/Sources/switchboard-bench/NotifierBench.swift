import ArgumentParser
import Foundation
import NotifierDemo
import NotifierService
import Synchronization
import SwitchboardHarness

/// `switchboard-bench notifier`: the notifier's targets against the real release `notifier`
/// executable, a real `nats-server -js` and `redis-server` the bench starts itself.
///
/// - Idle memory: notifier RSS before any socket and with N idle WebSockets, per socket, at
///   N = `--sockets` and as close to `--max-sockets` as the file-descriptor limits allow.
/// - Delivery rate: `--sockets` users connected; Deliveries covering all of them published
///   to the notifier's inbox; socket writes/s as the clients receive them, cross-checked
///   with the notifier's own counters. Optionally again with some users on two devices.
///
/// The clients run in this process on the same cores as the notifier.
struct NotifierBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifier",
        abstract: "Notifier idle memory per WebSocket and socket writes/s for one Delivery to many sockets (real servers)."
    )

    @Option(help: "Users (one socket each) of the delivery phase, and the first N of the memory phase.") var sockets = 10_000
    @Option(help: "The memory phase's largest N (reduced to what the file-descriptor limits allow).") var maxSockets = 50_000
    @Option(help: "Users who also open a second socket in a second delivery run (0: no such run).") var secondDeviceUsers = 2_000
    @Option(help: "Bursts per delivery run.") var bursts = 5
    @Option(help: "Events published back to back per burst.") var eventsPerBurst = 20
    @Option(help: "Single events per delivery run (publish → last frame each).") var singleEvents = 5
    @Option(help: "Text bytes in each event's message.") var textBytes = 100
    @Option(help: "Loopback TCP connections of the kernel write ceiling (0: skip it).") var ceilingSockets = 5_000
    @Option(help: "Frames written to each of them.") var ceilingRounds = 20
    @Option(help: "Client event-loop threads.") var clientThreads = 1
    @Option(help: "The notifier's event-loop threads (default: its own, one per core).") var notifierThreads: Int?
    @Option(help: "Client sockets per loopback source address (127.0.0.2, 127.0.0.3, …).") var socketsPerAddress = NotifierClientFleet.defaultSocketsPerAddress
    @Option(help: "WebSocket handshakes in flight at once.") var connectConcurrency = 256
    @Option(help: "Seconds to let the notifier settle before reading its RSS.") var settleSeconds = 2.0
    @Option(help: "The notifier executable (default: the root package's build of the same configuration).") var notifierPath: String?
    @Flag(help: "Append the result to the results file (under '## Notifier').") var appendResults = false
    @Option(help: "Markdown results file.") var results = "bench/RESULTS.md"
    @Flag(help: "Keep the temp directory with the server and notifier logs.") var keepLogs = false
    @Flag(help: "Skip the memory phase.") var skipMemory = false
    @Flag(help: "Skip the delivery phase.") var skipDelivery = false

    /// What both phases share about how to drive clients and the notifier.
    struct Tuning {
        var clientThreads: Int
        var notifierThreads: Int?
        var socketsPerAddress: Int
        var connectConcurrency: Int
        var settleSeconds: Double
    }

    func validate() throws {
        guard sockets > 0, maxSockets >= sockets, secondDeviceUsers >= 0, secondDeviceUsers <= sockets else {
            throw ValidationError("need sockets > 0, max-sockets ≥ sockets, 0 ≤ second-device-users ≤ sockets")
        }
        guard bursts >= 0, eventsPerBurst > 0, singleEvents >= 0, textBytes >= 0, clientThreads > 0, socketsPerAddress > 0,
              connectConcurrency > 0, settleSeconds >= 0, notifierThreads.map({ $0 > 0 }) ?? true else {
            throw ValidationError("counts must be positive (bursts, single events, text bytes may be 0)")
        }
        guard bursts + singleEvents > 0 else { throw ValidationError("nothing to measure: --bursts and --single-events are both 0") }
    }

    func run() throws {
        let header = RunHeader.begin("notifier")

        // Children inherit the limit: raise it here, before the notifier starts.
        let wantedFiles = max(maxSockets, sockets + secondDeviceUsers) + 1024
        let raiseFailure = FileLimits.raise(to: wantedFiles)
        let limits = FileLimits.current
        let fdLine = "file descriptors: soft \(limits.soft), hard \(limits.hard) for the bench and the notifier it starts; "
            + (raiseFailure.map { "raising to \(wantedFiles): \($0)" } ?? "raised to \(wantedFiles)")
        print(fdLine)

        let notifierExecutable = notifierPath ?? ServiceExecutables.path("notifier")
        let env = try PipelineEnvironment(partitionCount: 16, keepLogs: keepLogs)
        defer { env.stop() }
        print("servers: nats-server \(env.natsURL), redis-server \(env.redisURL), logs in \(env.directory.path)")
        print("notifier: \(notifierExecutable)")

        var secret = [UInt8](repeating: 0, count: 48)
        for index in secret.indices { secret[index] = UInt8.random(in: 0x21...0x7E) }
        let secretFile = env.directory.appendingPathComponent("jwt-secret")
        try Data(secret).write(to: secretFile)
        let userCount = max(skipMemory ? 0 : maxSockets, sockets)
        let t0 = ContinuousClock.now
        let tokens = try Self.tokens(secret: secret, users: userCount)
        print(String(format: "signed %d tokens in %.1f s", userCount, (ContinuousClock.now - t0).seconds))

        let tuning = Tuning(clientThreads: clientThreads, notifierThreads: notifierThreads, socketsPerAddress: socketsPerAddress,
                            connectConcurrency: connectConcurrency, settleSeconds: settleSeconds)
        var memory: NotifierMemoryPhase.Result?
        if !skipMemory {
            print("\n# idle memory")
            memory = try NotifierMemoryPhase(env: env, notifierPath: notifierExecutable, secretFile: secretFile, tokens: tokens, options: tuning)
                .run(sockets: sockets, maxSockets: maxSockets)
        }
        var ceiling: NotifierWriteCeiling.Result?
        if ceilingSockets > 0 && !skipDelivery {
            print("\n# kernel write ceiling: \(ceilingSockets) loopback TCP sockets × \(ceilingRounds) frames, one thread")
            let result = try NotifierWriteCeiling.measure(sockets: ceilingSockets, rounds: ceilingRounds,
                                                          frameBytes: NotifierDeliveryPhase.frameBytes(textBytes: textBytes, seq: 1))
            print(NotifierReport.ceilingLine(result))
            ceiling = result
        }
        var delivery: [NotifierDeliveryPhase.Run] = []
        if !skipDelivery {
            delivery = try NotifierDeliveryPhase(env: env, notifierPath: notifierExecutable, secretFile: secretFile, tokens: tokens, options: tuning)
                .run(users: sockets, secondDeviceUsers: secondDeviceUsers, bursts: bursts, eventsPerBurst: eventsPerBurst,
                     singleEvents: singleEvents, textBytes: textBytes)
        }

        let report = NotifierReport(
            date: Date(), command: header.command, load: header.loadAtStart, fileDescriptors: fdLine, clientThreads: clientThreads,
            notifierThreads: notifierThreads, eventsPerBurst: eventsPerBurst, memory: memory, ceiling: ceiling, delivery: delivery
        ).markdown
        print("\n" + report)
        if appendResults {
            try NotifierReport.append(report, to: results)
            print("appended to \(results)")
        }
    }

    /// One token per user `bench-user-<i>`, signed with `secret` by `TokenIssuer` (async,
    /// bridged: this command is synchronous like the other benches).
    static func tokens(secret: [UInt8], users: Int) throws -> [(user: String, token: String)] {
        final class Outcome: Sendable {
            let result = Mutex<Result<[(user: String, token: String)], any Error>?>(nil)
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            let result: Result<[(user: String, token: String)], any Error>
            do {
                let issuer = await TokenIssuer(secret: secret)
                var tokens: [(user: String, token: String)] = []
                tokens.reserveCapacity(users)
                for index in 0..<users {
                    let user = "bench-user-\(index)"
                    tokens.append((user, try await issuer.token(user: user, lifetime: .seconds(4 * 3600))))
                }
                result = .success(tokens)
            } catch {
                result = .failure(error)
            }
            outcome.result.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.result.withLock { $0! }.get()
    }
}

enum NotifierBenchError: Error, CustomStringConvertible {
    /// One client socket could not open (connect, upgrade or hello).
    case socket(String)

    var description: String {
        switch self {
        case .socket(let what): what
        }
    }
}
