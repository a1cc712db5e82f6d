import Foundation

/// A real `nats-server -js` on a free loopback port with its own store directory.
/// Call `stop()` in a `defer`; deinit stops it as a last resort.
public final class NATSServerFixture: @unchecked Sendable {  // `process` changes only in restart(), called by the owner's thread
    public let port: UInt16
    public let directory: TemporaryDirectory
    public private(set) var process: ServerProcess
    /// The HTTP monitoring port (/varz, /subsz), when started with `monitoring`.
    public let monitorPort: UInt16?
    public var url: String { "nats://127.0.0.1:\(port)" }
    private let arguments: [String]
    private let listenTimeout: Duration

    /// `storeDirectory`: the JetStream store when it must outlive the fixture (default: in
    /// `directory`); restoring a large kept store can take minutes, hence `listenTimeout`.
    /// `directory`: where the log (and store) go (default: a temp directory of its own).
    public init(extraArguments: [String] = [], monitoring: Bool = false, storeDirectory: URL? = nil,
                listenTimeout: Duration = .seconds(15), directory: TemporaryDirectory? = nil) throws {
        self.directory = try directory ?? TemporaryDirectory(prefix: "switchboard-test-nats")
        monitorPort = monitoring ? try LoopbackPort.free() : nil
        arguments = ["-js", "-a", "127.0.0.1", "-sd", (storeDirectory ?? self.directory.url.appendingPathComponent("js")).path]
            + (monitorPort.map { ["-m", "\($0)"] } ?? []) + extraArguments
        self.listenTimeout = listenTimeout
        let directory = self.directory, arguments = arguments
        (process, port) = try ServerProcess.startOnFreePort(listenTimeout: listenTimeout) { port in
            try NATSServerFixture.launch(port: port, directory: directory, arguments: arguments)
        }
    }

    private static func launch(port: UInt16, directory: TemporaryDirectory, arguments: [String]) throws -> ServerProcess {
        try ServerProcess(name: "nats-server", executable: NATSServerBinary.path, arguments: arguments + ["-p", "\(port)"],
                          logURL: directory.url.appendingPathComponent("nats.log"))
    }

    /// Stops the server and starts it again on the same port with the same store (data kept).
    public func restart() throws {
        process.stop()
        let directory = directory, arguments = arguments
        process = try ServerProcess.startListening(on: port, timeout: listenTimeout) { port in
            try NATSServerFixture.launch(port: port, directory: directory, arguments: arguments)
        }
    }

    /// Stops the server; its directory (log, store) is removed unless `keepFiles`.
    public func stop(keepFiles: Bool = false) {
        process.stop()
        if keepFiles { directory.keep() } else { directory.remove() }
    }
}

/// The nats-server every fixture runs: `SWITCHBOARD_NATS_SERVER` (a path or a name on PATH;
/// scripts/test sets it for its pass against the pinned current release), else `nats-server`
/// (Debian 12's 2.9.10).
public enum NATSServerBinary {
    public static var path: String { ProcessInfo.processInfo.environment["SWITCHBOARD_NATS_SERVER"] ?? "nats-server" }

    /// Major and minor version from `nats-server --version` ("nats-server: v2.9.10").
    public static func version() throws -> (major: Int, minor: Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ServerProcess.resolve(path))
        process.arguments = ["--version"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let numbers = text.split(separator: "v").last.map { $0.split(separator: ".").compactMap { Int($0.prefix { $0.isNumber }) } } ?? []
        guard numbers.count >= 2 else { throw FixtureError.executableNotFound("\(path) (unreadable version: \(text))") }
        return (numbers[0], numbers[1])
    }

    /// Whether this server applies a stream's `subject_transform` (2.10 and later).
    public static func hasStreamSubjectTransforms() throws -> Bool {
        let (major, minor) = try version()
        return major > 2 || (major == 2 && minor >= 10)
    }
}

/// A real `redis-server` on a free loopback port, persistence off, in a temp directory.
public final class RedisServerFixture: @unchecked Sendable {  // `process` changes only in restart(), called by the owner's thread
    public let port: UInt16
    public let directory: TemporaryDirectory
    public private(set) var process: ServerProcess
    public var url: String { "redis://127.0.0.1:\(port)" }

    /// `directory`: where the log goes (default: a temp directory of its own).
    public init(directory: TemporaryDirectory? = nil) throws {
        let directory = try directory ?? TemporaryDirectory(prefix: "switchboard-test-redis")
        self.directory = directory
        (process, port) = try ServerProcess.startOnFreePort { port in try RedisServerFixture.launch(port: port, directory: directory) }
    }

    private static func launch(port: UInt16, directory: TemporaryDirectory) throws -> ServerProcess {
        try ServerProcess(
            name: "redis-server",
            executable: "redis-server",
            arguments: ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path],
            logURL: directory.url.appendingPathComponent("redis.log")
        )
    }

    /// Stops the server and starts an empty one on the same port (all data lost, as in an outage).
    public func restart() throws {
        process.stop()
        let directory = directory
        process = try ServerProcess.startListening(on: port) { port in try RedisServerFixture.launch(port: port, directory: directory) }
    }

    /// Stops the server; its directory is removed unless `keepFiles`.
    public func stop(keepFiles: Bool = false) {
        process.stop()
        if keepFiles { directory.keep() } else { directory.remove() }
    }
}

/// Paths of the executables `swift build` put next to the test bundle.
public enum BuiltProducts {
    public static var directory: URL {
        if let dir = ProcessInfo.processInfo.environment["SWITCHBOARD_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // The test runner sits in <bin>/SwitchboardPackageTests.xctest (a file on Linux).
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("fanout").path) { return url }
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}
