import Foundation
import SwitchboardHarness
import Testing

/// Every end-to-end and fault test runs a whole deployment as processes; they run one at a
/// time so that the timings they check are not skewed by each other on a small machine.
@Suite(.serialized) struct EndToEnd {}

/// A Python peer (`Peers/<script>`) run with the interpreter that has its libraries.
enum PythonPeers {
    static func path(_ script: String) -> String {
        RepositoryPaths.root.appendingPathComponent("Tests/EndToEndTests/Peers/\(script)").path
    }

    static func start(_ script: String, _ arguments: [String], logs: TemporaryDirectory) throws -> ServerProcess {
        try ServerProcess(
            name: script, executable: PythonPeer.interpreter, arguments: ["-u", path(script)] + arguments,
            logURL: logs.url.appendingPathComponent("\(script)-\(UUID().uuidString.prefix(6)).log")
        )
    }
}

/// Milliseconds between two instants, for the numbers the tests print.
func milliseconds(_ from: ContinuousClock.Instant, _ to: ContinuousClock.Instant = .now) -> Int {
    let elapsed = to - from
    return Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
}

/// One line on stdout with a measured number (the report quotes them).
func report(_ line: String) {
    print("[e2e] \(line)")
}
