import Foundation
import SwitchboardHarness
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension EndToEnd {
    /// `scripts/run` as a supervisor, on free ports with the test's own build: a notifier
    /// killed with SIGKILL is restarted and serves again; SIGHUP (the terminal closing) stops
    /// every process it started, servers included, and frees every port.
    @Test func runScriptRestartsAKilledNotifierAndLeavesNothingRunningAfterSIGHUP() throws {
        let scratch = try TemporaryDirectory(prefix: "switchboard-test-run")
        defer { scratch.remove() }
        let runDirectory = scratch.url.appendingPathComponent("run").path
        let ports = try (0..<5).map { _ in try LoopbackPort.free() }
        let (nats, redis, fanout, notifier1, notifier2) = (ports[0], ports[1], ports[2], ports[3], ports[4])
        let script = try ServerProcess(
            name: "scripts/run", executable: RepositoryPaths.root.appendingPathComponent("scripts/run").path, arguments: [],
            environment: [
                "NATS_PORT": "\(nats)", "REDIS_PORT": "\(redis)", "FANOUT_HTTP": "127.0.0.1:\(fanout)",
                "NOTIFIER_PORTS": "\(notifier1) \(notifier2)",
                "SWITCHBOARD_BIN": BuiltProducts.directory.path, "SWITCHBOARD_RUN_DIR": runDirectory,
            ],
            logURL: scratch.url.appendingPathComponent("run.log")
        )
        defer { script.stop() }
        let launched = ContinuousClock.now
        let started = eventually(timeout: .seconds(90)) { FileManager.default.fileExists(atPath: runDirectory + "/env") }
        try #require(started, "scripts/run did not report ready:\n\(script.log())")

        let readyAfter = milliseconds(launched)
        // Each demo page runs the client library and is given both notifiers, its own first.
        let page = try HTTPProbe.get(port: notifier1, path: "/")
        #expect(page.body.contains(#"const configured = ["ws://127.0.0.1:\#(notifier1)/ws","ws://127.0.0.1:\#(notifier2)/ws"];"#), "\(page.body.prefix(300))")
        #expect(try HTTPProbe.get(port: notifier2, path: "/switchboard.js").body.contains("export class SwitchboardClient"))
        let stack = StartedProcesses(runDirectory: runDirectory)
        let killed = try #require(stack.pid(withArgument: "notifier-1"), "no notifier-1 among \(stack.all())")
        kill(killed, SIGKILL)
        let killedAt = ContinuousClock.now
        let restarted = eventually(timeout: .seconds(30)) {
            guard let pid = stack.pid(withArgument: "notifier-1"), pid != killed else { return false }
            return (try? HTTPProbe.get(port: notifier1, path: "/readyz").status) == 200
        }
        #expect(restarted, "notifier-1 was not restarted:\n\(script.log())")
        let backAfter = milliseconds(killedAt)
        #expect(script.log().contains("notifier-1 exited"))
        #expect(stack.pid(withArgument: "notifier-2") != nil && script.isRunning, "the rest of the stack must keep running")

        script.send(SIGHUP)
        let hungUpAt = ContinuousClock.now
        #expect(script.waitForExit(timeout: .seconds(30)) != nil, "scripts/run did not stop on SIGHUP:\n\(script.log())")
        #expect(eventually(timeout: .seconds(10)) { stack.all().isEmpty }, "left running: \(stack.all())")
        report("scripts/run: ready \(readyAfter) ms after launch, notifier-1 serving again \(backAfter) ms after SIGKILL, everything stopped \(milliseconds(hungUpAt)) ms after SIGHUP")
        for port in ports {
            #expect(!LoopbackPort.isListening(port), "port \(port) is still open")
        }
    }
}

/// The processes one `scripts/run` started, told apart from every other process by the
/// `SWITCHBOARD_RUN_DIR` they all inherit (read from /proc, which shows a user its own
/// processes' environments).
private struct StartedProcesses {
    let marker: [UInt8]

    init(runDirectory: String) { marker = Array("SWITCHBOARD_RUN_DIR=\(runDirectory)".utf8) }

    /// pid → command line (arguments joined by spaces).
    func all() -> [Int32: String] {
        var found: [Int32: String] = [:]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), pid != getpid(),
                  let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ"),
                  environment.split(separator: 0).contains(where: { Array($0) == marker }),
                  let commandLine = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !commandLine.isEmpty
            else { continue }
            found[pid] = commandLine.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
        }
        return found
    }

    /// The process (not a supervising shell) that has `argument` among its arguments.
    func pid(withArgument argument: String) -> Int32? {
        all().first { _, commandLine in
            let words = commandLine.split(separator: " ")
            return words.contains(Substring(argument)) && !(words.first?.hasSuffix("bash") ?? false)
        }?.key
    }
}
