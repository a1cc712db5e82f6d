import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The child processes this process started and has not stopped yet. The bench installs
/// `killOnInterrupt()` so that a Ctrl-C (or SIGTERM) leaves no servers behind; the tests leave
/// cleanup to each fixture's `stop()` and deinit.
public enum ChildProcesses {
    private static let pids = Mutex<Set<Int32>>([])
    private static let installed = Mutex<[any DispatchSourceSignal]>([])

    static func started(_ pid: Int32) { _ = pids.withLock { $0.insert(pid) } }
    static func ended(_ pid: Int32) { _ = pids.withLock { $0.remove(pid) } }

    /// On SIGINT or SIGTERM: SIGKILL every running child, say so on stderr as `program`, exit 130.
    /// Idempotent.
    public static func killOnInterrupt(program: String) {
        installed.withLock { sources in
            guard sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    let children = pids.withLock { Array($0) }
                    for pid in children { kill(pid, SIGKILL) }
                    FileHandle.standardError.write(Data("\(program): interrupted, stopped \(children.count) child process(es)\n".utf8))
                    exit(130)
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}
