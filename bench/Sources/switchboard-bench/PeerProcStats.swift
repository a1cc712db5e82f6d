import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A server process whose CPU and context switches `switchboard-bench peer` charges to its
/// system.
struct PeerServerProcess: Sendable {
    var name: String
    var pid: Int32
}

/// What /proc says about a set of processes at one instant.
struct PeerProcSample: Sendable {
    /// utime + stime per process, seconds (all threads, living and exited).
    var cpuSeconds: [Double]
    /// voluntary + nonvoluntary context switches per process, summed over its live threads.
    var contextSwitches: [Int]
    /// CLOCK_MONOTONIC when taken.
    var atNs: UInt64

    static func take(_ processes: [PeerServerProcess]) -> PeerProcSample {
        PeerProcSample(
            cpuSeconds: processes.map { Machine.cpuSeconds(pid: $0.pid) },
            contextSwitches: processes.map { PeerProcStats.contextSwitches(pid: $0.pid) },
            atNs: pipelineNowNs()
        )
    }
}

/// Readers of /proc/<pid>/task/<tid>/status and of process parents.
enum PeerProcStats {
    /// Context switches of every thread of `pid`: /proc/<pid>/status counts the main thread
    /// only, and the servers here do most of their work on other threads.
    static func contextSwitches(pid: Int32) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.reduce(0) { sum, tid in sum + switches(statusPath: "/proc/\(pid)/task/\(tid)/status") }
    }

    private static func switches(statusPath: String) -> Int {
        guard let status = try? String(contentsOfFile: statusPath, encoding: .utf8) else { return 0 }
        var total = 0
        for line in status.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") || line.hasPrefix("nonvoluntary_ctxt_switches:") {
            total += line.split(separator: "\t").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        }
        return total
    }

    /// Children of `pid` (nginx's workers), from the parent field of every /proc/<n>/stat.
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { candidate in
            guard let stat = try? String(contentsOfFile: "/proc/\(candidate)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid
        }.sorted()
    }
}
