import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Errors of the test fixtures that start real servers.
public enum FixtureError: Error, CustomStringConvertible {
    case executableNotFound(String)
    case notListening(name: String, port: UInt16, log: String)
    case exitedEarly(name: String, status: Int32, log: String)
    case socket(String)

    public var description: String {
        switch self {
        case .executableNotFound(let name): "\(name) is not installed (see scripts/test, which installs it)"
        case .notListening(let name, let port, let log): "\(name) did not listen on 127.0.0.1:\(port) in time; log:\n\(log)"
        case .exitedEarly(let name, let status, let log): "\(name) exited with status \(status) during start-up; log:\n\(log)"
        case .socket(let what): "socket error: \(what)"
        }
    }
}

/// A scratch directory removed by `remove()` (and at deinit, if a test forgot).
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL
    public var path: String { url.path }

    public init(prefix: String = "switchboard-test") throws {
        let base = URL(fileURLWithPath: NSTemporaryDirectory())
        url = base.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }
    deinit { remove() }
}

/// Loopback ports for servers started by tests.
public enum LoopbackPort {
    /// A port the kernel reports free right now. Another process may take it before the
    /// server binds; fixtures retry start-up with a new port when that happens.
    public static func free() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError.socket("socket() failed: \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw FixtureError.socket("bind() failed: \(errno)") }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// True when something accepts TCP connections on 127.0.0.1:`port`.
    public static func isListening(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// A child process owned by a test: output goes to a log file, `stop()` terminates it (SIGTERM,
/// then SIGKILL after a grace period), and deinit stops it if the test did not.
public final class ServerProcess: @unchecked Sendable {
    public let name: String
    public let logURL: URL
    private let process = Process()
    private let lock = NSLock()

    /// Looks `executable` up on PATH (or takes an absolute path) and starts it.
    public init(name: String, executable: String, arguments: [String], environment: [String: String] = [:], logURL: URL) throws {
        self.name = name
        self.logURL = logURL
        process.executableURL = URL(fileURLWithPath: try ServerProcess.resolve(executable))
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        // The child inherits this thread's signal mask; test runner threads may block
        // SIGTERM, which would make every graceful stop wait for SIGKILL.
        var unblocked = sigset_t(), previous = sigset_t()
        sigemptyset(&unblocked)
        pthread_sigmask(SIG_SETMASK, &unblocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// The process's output so far (for failure messages).
    public func log() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Sends `signal` without waiting (SIGSTOP/SIGCONT for pause tests, SIGKILL for crash tests).
    public func send(_ signal: Int32) { if process.isRunning { kill(process.processIdentifier, signal) } }

    /// Waits up to `timeout` for the process to exit by itself; returns its status, or nil.
    @discardableResult
    public func waitForExit(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`. Idempotent.
    public func stop(grace: Duration = .seconds(5)) {
        lock.lock(); defer { lock.unlock() }
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGCONT)  // a paused process cannot handle SIGTERM
        kill(process.processIdentifier, SIGTERM)
        if waitForExit(timeout: grace) == nil {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Polls until 127.0.0.1:`port` accepts connections or `timeout` passes.
    public func waitUntilListening(port: UInt16, timeout: Duration = .seconds(15)) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !process.isRunning { throw FixtureError.exitedEarly(name: name, status: process.terminationStatus, log: log()) }
            if LoopbackPort.isListening(port) { return }
            usleep(20_000)
        }
        throw FixtureError.notListening(name: name, port: port, log: log())
    }

    deinit { stop(grace: .seconds(2)) }

    static func resolve(_ executable: String) throws -> String {
        if executable.hasPrefix("/") { return executable }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw FixtureError.executableNotFound(executable)
    }
}
