import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Three real `nats-server -js` nodes on free loopback ports, joined by cluster routes into
/// one JetStream cluster, each with its own store directory. A node can be killed (SIGKILL,
/// as a crashed machine) and restarted on the same ports with its store kept.
/// Call `stop()` in a `defer`; deinit stops the nodes as a last resort.
public final class NATSClusterFixture: @unchecked Sendable {
    /// One node's fixed addresses; they stay the same across restarts so routes and client
    /// URL lists keep pointing at it.
    public struct Node: Sendable {
        public let name: String
        public let clientPort: UInt16
        public let clusterPort: UInt16
        public let monitorPort: UInt16
        public var url: String { "nats://127.0.0.1:\(clientPort)" }
    }

    public static let clusterName = "switchboard-test"

    public let nodes: [Node]
    public let directory: TemporaryDirectory
    private var processes: [ServerProcess?]
    private let lock = NSLock()

    /// Every node's client URL, comma-separated, as services take it (`--nats-url`).
    public var url: String { nodes.map(\.url).joined(separator: ",") }

    /// Starts three nodes and waits until JetStream is healthy on each (meta leader elected).
    public init(size: Int = 3) throws {
        directory = try TemporaryDirectory(prefix: "switchboard-test-nats-cluster")
        var nodes: [Node] = []
        var taken = Set<UInt16>()
        func port() throws -> UInt16 {
            // LoopbackPort.free() may hand the same port twice when asked in a row.
            for _ in 0..<20 {
                let candidate = try LoopbackPort.free()
                if taken.insert(candidate).inserted { return candidate }
            }
            throw FixtureError.socket("no distinct free port")
        }
        for index in 0..<size {
            nodes.append(Node(name: "node-\(index)", clientPort: try port(), clusterPort: try port(), monitorPort: try port()))
        }
        self.nodes = nodes
        processes = Array(repeating: nil, count: size)
        for index in nodes.indices { processes[index] = try launch(index) }
        for index in nodes.indices { try waitUntilHealthy(index) }
    }

    private func launch(_ index: Int) throws -> ServerProcess {
        let node = nodes[index]
        let routes = nodes.filter { $0.name != node.name }.map { "nats://127.0.0.1:\($0.clusterPort)" }.joined(separator: ",")
        let process = try ServerProcess(
            name: "nats-server \(node.name)",
            executable: NATSServerBinary.path,
            arguments: [
                "-js", "-n", node.name, "-a", "127.0.0.1", "-p", "\(node.clientPort)", "-m", "\(node.monitorPort)",
                "-sd", directory.url.appendingPathComponent(node.name).path,
                "--cluster_name", Self.clusterName, "--cluster", "nats://127.0.0.1:\(node.clusterPort)", "--routes", routes,
            ],
            logURL: directory.url.appendingPathComponent("\(node.name)-\(UUID().uuidString.prefix(4)).log")
        )
        do {
            try process.waitUntilListening(port: node.clientPort)
        } catch {
            process.stop(grace: .seconds(1))
            throw error
        }
        return process
    }

    /// Waits until the node's `/healthz` answers 200: JetStream is up and the cluster has a
    /// meta leader (a node alone in a cluster of three is not healthy).
    public func waitUntilHealthy(_ index: Int, timeout: Duration = .seconds(30)) throws {
        guard HTTPProbe.waitFor200(port: nodes[index].monitorPort, path: "/healthz", timeout: timeout) else {
            throw FixtureError.notListening(name: nodes[index].name, port: nodes[index].monitorPort, log: log(index))
        }
    }

    public func process(_ index: Int) -> ServerProcess? { lock.withLock { processes[index] } }

    /// The index of the node whose server name is `name` (as JetStream reports leaders).
    public func index(named name: String) -> Int? { nodes.firstIndex { $0.name == name } }

    /// SIGKILL: the node vanishes without closing its routes or client connections cleanly.
    public func kill(_ index: Int) {
        guard let process = process(index) else { return }
        process.send(SIGKILL)
        _ = process.waitForExit(timeout: .seconds(5))
    }

    /// Starts a killed or stopped node again on the same ports with the store it had.
    public func restart(_ index: Int) throws {
        process(index)?.stop(grace: .seconds(2))
        let process = try launch(index)
        lock.withLock { processes[index] = process }
    }

    public func log(_ index: Int) -> String { process(index)?.log() ?? "" }

    public func stop() {
        for process in lock.withLock({ processes }) { process?.stop(grace: .seconds(2)) }
        directory.remove()
    }

    deinit { for process in processes { process?.stop(grace: .seconds(1)) } }
}
