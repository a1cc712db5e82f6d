import Foundation

/// A real `nats-server -js` on a free loopback port with its own store directory.
/// Call `stop()` in a `defer`; deinit stops it as a last resort.
public final class NATSServerFixture: @unchecked Sendable {
    public let port: UInt16
    public let directory: TemporaryDirectory
    public private(set) var process: ServerProcess
    public var url: String { "nats://127.0.0.1:\(port)" }

    public init(extraArguments: [String] = []) throws {
        directory = try TemporaryDirectory(prefix: "switchboard-test-nats")
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try LoopbackPort.free()
            do {
                let process = try NATSServerFixture.launch(port: port, directory: directory, extraArguments: extraArguments)
                self.port = port
                self.process = process
                self.extraArguments = extraArguments
                return
            } catch {
                lastError = error
            }
        }
        throw lastError!
    }

    private let extraArguments: [String]

    private static func launch(port: UInt16, directory: TemporaryDirectory, extraArguments: [String]) throws -> ServerProcess {
        let process = try ServerProcess(
            name: "nats-server",
            executable: "nats-server",
            arguments: ["-js", "-a", "127.0.0.1", "-p", "\(port)", "-sd", directory.url.appendingPathComponent("js").path] + extraArguments,
            logURL: directory.url.appendingPathComponent("nats.log")
        )
        do {
            try process.waitUntilListening(port: port)
        } catch {
            process.stop(grace: .seconds(1))
            throw error
        }
        return process
    }

    /// Stops the server and starts it again on the same port with the same store (data kept).
    public func restart() throws {
        process.stop()
        process = try NATSServerFixture.launch(port: port, directory: directory, extraArguments: extraArguments)
    }

    public func stop() {
        process.stop()
        directory.remove()
    }
}

/// A real `redis-server` on a free loopback port, persistence off, in a temp directory.
public final class RedisServerFixture: @unchecked Sendable {
    public let port: UInt16
    public let directory: TemporaryDirectory
    public private(set) var process: ServerProcess
    public var url: String { "redis://127.0.0.1:\(port)" }

    public init() throws {
        directory = try TemporaryDirectory(prefix: "switchboard-test-redis")
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try LoopbackPort.free()
            do {
                process = try RedisServerFixture.launch(port: port, directory: directory)
                self.port = port
                return
            } catch {
                lastError = error
            }
        }
        throw lastError!
    }

    private static func launch(port: UInt16, directory: TemporaryDirectory) throws -> ServerProcess {
        let process = try ServerProcess(
            name: "redis-server",
            executable: "redis-server",
            arguments: ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path],
            logURL: directory.url.appendingPathComponent("redis.log")
        )
        do {
            try process.waitUntilListening(port: port)
        } catch {
            process.stop(grace: .seconds(1))
            throw error
        }
        return process
    }

    /// Stops the server and starts an empty one on the same port (all data lost, as in an outage).
    public func restart() throws {
        process.stop()
        process = try RedisServerFixture.launch(port: port, directory: directory)
    }

    public func stop() {
        process.stop()
        directory.remove()
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
