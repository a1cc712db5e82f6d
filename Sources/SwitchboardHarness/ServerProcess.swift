import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Errors of the test fixtures that start real servers.
public enum FixtureError: Error, CustomStringConvertible {
    case executableNotFound(String)
    case notListening(name: String, port: UInt16, log: String)
    case exitedEarly(name: String, status: Int32, log: String)
    case notReady(name: String, port: UInt16, path: String, log: String)
    case socket(String)
    case setup(String)

    public var description: String {
        switch self {
        case .executableNotFound(let name): "\(name) is not installed or not executable (scripts/deps installs the servers, swift build the services)"
        case .notListening(let name, let port, let log): "\(name) did not listen on 127.0.0.1:\(port) in time; log:\n\(log)"
        case .exitedEarly(let name, let status, let log): "\(name) exited with status \(status) during start-up; log:\n\(log)"
        case .notReady(let name, let port, let path, let log): "\(name) did not answer 200 on 127.0.0.1:\(port)\(path) in time; log:\n\(log)"
        case .socket(let what): "socket error: \(what)"
        case .setup(let what): what
        }
    }
}

/// A scratch directory removed by `remove()` (and at deinit, if its owner forgot), unless
/// `keep()` was called (logs kept for a post-mortem).
public final class TemporaryDirectory: Sendable {
    public let url: URL
    public var path: String { url.path }
    private let kept = Atomic<Bool>(false)

    public init(prefix: String = "switchboard-test") throws {
        let base = URL(fileURLWithPath: NSTemporaryDirectory())
        url = base.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }
    public func keep() { kept.store(true, ordering: .relaxed) }
    deinit { if !kept.load(ordering: .relaxed) { remove() } }
}

/// Loopback ports for servers started by tests and the bench.
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

/// A child process owned by a test or the bench: output goes to a log file, `stop()` terminates
/// it (SIGTERM, then SIGKILL after a grace period), and deinit stops it if its owner did not.
/// Every running one is known to `ChildProcesses`, which can kill them all on Ctrl-C.
public final class ServerProcess: @unchecked Sendable {  // `process` is guarded by `lock` where it is mutated
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
        ChildProcesses.started(process.processIdentifier)
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// The process's output so far (for failure messages).
    public func log() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// The last `lines` lines of the output.
    public func logTail(lines: Int = 30) -> String {
        log().split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

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
        defer { ChildProcesses.ended(process.processIdentifier) }
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

    /// Polls `GET path` on 127.0.0.1:`port` until it answers 200; throws when the process
    /// exits first or `timeout` passes. Returns how long it took from the call.
    @discardableResult
    public func waitUntilReady(port: UInt16, path: String = "/readyz", timeout: Duration, poll: Duration = .milliseconds(20)) throws -> Duration {
        let started = ContinuousClock.now
        while ContinuousClock.now < started + timeout {
            if !process.isRunning { throw FixtureError.exitedEarly(name: name, status: process.terminationStatus, log: logTail()) }
            if (try? HTTPProbe.get(port: port, path: path))?.status == 200 { return ContinuousClock.now - started }
            usleep(UInt32(poll.components.seconds * 1_000_000 + poll.components.attoseconds / 1_000_000_000_000))
        }
        throw FixtureError.notReady(name: name, port: port, path: path, log: logTail())
    }

    /// Starts a server on a free loopback port and waits until it listens; a port taken by
    /// someone else between the choice and the bind is retried with another one (5 tries).
    public static func startOnFreePort(listenTimeout: Duration = .seconds(15), _ launch: (UInt16) throws -> ServerProcess) throws -> (process: ServerProcess, port: UInt16) {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try LoopbackPort.free()
            do {
                return (try startListening(on: port, timeout: listenTimeout, launch), port)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? FixtureError.socket("no free port")
    }

    /// Starts a Switchboard service (`fanout`, `notifier`) whose HTTP listener takes a free
    /// loopback port (`arguments` gets the port) and waits until its /readyz answers 200; a
    /// service that does not get ready is stopped. `readyAfter` counts from before the launch.
    public static func startService(name: String, executable: String, environment: [String: String] = [:], logURL: URL,
                                    readyTimeout: Duration, arguments: (UInt16) -> [String]) throws -> (process: ServerProcess, port: UInt16, readyAfter: Duration) {
        let port = try LoopbackPort.free()
        let started = ContinuousClock.now
        let process = try ServerProcess(name: name, executable: executable, arguments: arguments(port), environment: environment, logURL: logURL)
        do {
            try process.waitUntilReady(port: port, timeout: readyTimeout)
            return (process, port, ContinuousClock.now - started)
        } catch {
            process.stop(grace: .seconds(2))
            throw error
        }
    }

    /// Starts a server on `port` and waits until it listens; stops it when it does not.
    public static func startListening(on port: UInt16, timeout: Duration = .seconds(15), _ launch: (UInt16) throws -> ServerProcess) throws -> ServerProcess {
        let process = try launch(port)
        do {
            try process.waitUntilListening(port: port, timeout: timeout)
            return process
        } catch {
            process.stop(grace: .seconds(1))
            throw error
        }
    }

    deinit { stop(grace: .seconds(2)) }

    /// The path of `executable`: as given when absolute, else the first match on PATH (or the sbin folders).
    public static func resolve(_ executable: String) throws -> String {
        if executable.hasPrefix("/") {
            guard FileManager.default.isExecutableFile(atPath: executable) else { throw FixtureError.executableNotFound(executable) }
            return executable
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw FixtureError.executableNotFound(executable)
    }
}
