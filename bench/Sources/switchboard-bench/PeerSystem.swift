import Foundation

/// A system `switchboard-bench peer` measures: its server processes, the sockets a workload
/// needs, and the publisher that feeds it.
protocol PeerSystem: AnyObject {
    var name: String { get }
    /// The versions the results print (servers and modules).
    var versions: String { get }
    /// Every process whose CPU is the system's cost (looked up again per point: nginx's worker
    /// is a child of the master).
    func serverProcesses() -> [PeerServerProcess]
    /// The WebSocket of each socket of `workload`, socket i first-to-last.
    func targets(for workload: PeerWorkload) throws -> [PeerLoadClient.Target]
    /// Waits until the system knows every connected socket (Switchboard: Redis presence).
    func waitSubscribed(sockets: Int, timeout: Duration) throws
    var publisher: any PeerPublisher { get }
    func stop()
}

enum PeerBenchError: Error, CustomStringConvertible {
    case setup(String)
    case publish(String)

    var description: String {
        switch self {
        case .setup(let what): "peer bench set-up failed: \(what)"
        case .publish(let what): "peer bench publish failed: \(what)"
        }
    }
}

/// Runs a short command and returns its output (stdout and stderr), or nil when it could
/// not start; for version strings and package checks.
enum PeerShell {
    /// `command` is looked up on PATH (through /usr/bin/env) unless it is a path.
    static func output(_ command: String, _ arguments: [String], environment: [String: String] = [:]) -> (status: Int32, text: String)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
