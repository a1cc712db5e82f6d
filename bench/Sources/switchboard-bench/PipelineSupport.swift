import Foundation
import Histogram
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Plumbing for `switchboard-bench pipeline`: child processes (nats-server, redis-server,
// fanout) with bounded stops, free loopback ports, a minimal HTTP GET for /readyz, the
// monotonic clock and the latency sinks the inbox subscribers write into.

enum PipelineError: Error, CustomStringConvertible {
    case setup(String)
    case timeout(String)

    var description: String {
        switch self {
        case .setup(let what): "pipeline bench set-up failed: \(what)"
        case .timeout(let what): "pipeline bench timed out: \(what)"
        }
    }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC), comparable across the threads of this process.
@inline(__always)
func pipelineNowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Children started by the bench; a SIGINT/SIGTERM handler kills them before exiting so an
/// interrupted run leaves no servers behind.
enum PipelineChildren {
    private static let pids = Mutex<Set<Int32>>([])
    private static let installed = Mutex<Bool>(false)
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func add(_ pid: Int32) { _ = pids.withLock { $0.insert(pid) } }
    static func remove(_ pid: Int32) { _ = pids.withLock { $0.remove(pid) } }

    static func installSignalHandlers() {
        let first = installed.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                let children = pids.withLock { Array($0) }
                for pid in children { kill(pid, SIGKILL) }
                FileHandle.standardError.write(Data("switchboard-bench pipeline: interrupted, stopped \(children.count) child process(es)\n".utf8))
                exit(130)
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// One child process with its output in a log file. `stop()` sends SIGTERM, then SIGKILL
/// after `grace`; deinit stops it as a last resort.
final class PipelineProcess: @unchecked Sendable {
    let name: String
    let logURL: URL
    private let process = Process()
    private let lock = NSLock()

    init(name: String, executable: String, arguments: [String], logURL: URL) throws {
        self.name = name
        self.logURL = logURL
        process.executableURL = URL(fileURLWithPath: try Self.resolve(executable))
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        // Children inherit the signal mask; make sure SIGTERM reaches them.
        var unblocked = sigset_t(), previous = sigset_t()
        sigemptyset(&unblocked)
        pthread_sigmask(SIG_SETMASK, &unblocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        try process.run()
        PipelineChildren.add(process.processIdentifier)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func logTail(lines: Int = 30) -> String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    func stop(grace: Duration = .seconds(5)) {
        lock.lock(); defer { lock.unlock() }
        defer { PipelineChildren.remove(process.processIdentifier) }
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGCONT)
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Polls until 127.0.0.1:`port` accepts TCP connections (or the process dies, or `timeout`).
    func waitUntilListening(port: UInt16, timeout: Duration = .seconds(15)) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !process.isRunning { throw PipelineError.setup("\(name) exited with status \(process.terminationStatus); log:\n\(logTail())") }
            if PipelineNet.isListening(port) { return }
            usleep(20_000)
        }
        throw PipelineError.timeout("\(name) did not listen on 127.0.0.1:\(port); log:\n\(logTail())")
    }

    deinit { stop(grace: .seconds(2)) }

    static func resolve(_ executable: String) throws -> String {
        if executable.hasPrefix("/") {
            guard FileManager.default.isExecutableFile(atPath: executable) else { throw PipelineError.setup("\(executable) not found or not executable") }
            return executable
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw PipelineError.setup("\(executable) is not installed (scripts/deps installs it)")
    }
}

enum PipelineNet {
    private static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    /// A loopback port the kernel reports free right now.
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PipelineError.setup("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var addr = loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw PipelineError.setup("bind() failed: errno \(errno)") }
        return UInt16(bigEndian: addr.sin_port)
    }

    static func isListening(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = loopback(port)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// The HTTP status of `GET path` on 127.0.0.1:`port`, or nil (2 s socket timeouts).
    static func httpStatus(port: UInt16, path: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = loopback(port)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return nil }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 12 else { return nil }
        let line = String(decoding: buffer[0..<n], as: UTF8.self)
        let parts = line.split(separator: " ")
        return parts.count >= 2 ? Int(parts[1]) : nil
    }
}

/// Where an inbox (or relay) subscriber records what it receives: counts, first/last receive
/// times, and publish→receive latency of events sent inside the measurement window.
final class PipelineSink: Sendable {
    private let histogram = Mutex(Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three))
    let messages = Atomic<Int>(0)
    let undecodable = Atomic<Int>(0)
    let firstReceiveNs = Atomic<UInt64>(UInt64.max)
    let lastReceiveNs = Atomic<UInt64>(0)
    /// Only events sent at or after this instant are recorded (warm-up excluded).
    let recordFromNs = Atomic<UInt64>(UInt64.max)

    func received(at now: UInt64, sentNs: UInt64?) {
        messages.add(1, ordering: .relaxed)
        _ = firstReceiveNs.compareExchange(expected: UInt64.max, desired: now, ordering: .relaxed)
        lastReceiveNs.store(now, ordering: .relaxed)
        guard let sentNs else {
            undecodable.add(1, ordering: .relaxed)
            return
        }
        if sentNs >= recordFromNs.load(ordering: .relaxed) {
            let latency = now > sentNs ? now - sentNs : 0
            histogram.withLock { _ = $0.record(Swift.max(1, latency)) }
        }
    }

    /// Counts a message without looking inside (throughput phases).
    func counted(at now: UInt64) {
        messages.add(1, ordering: .relaxed)
        _ = firstReceiveNs.compareExchange(expected: UInt64.max, desired: now, ordering: .relaxed)
        lastReceiveNs.store(now, ordering: .relaxed)
    }

    var latencies: Histogram<UInt64> { histogram.withLock { $0 } }
}
