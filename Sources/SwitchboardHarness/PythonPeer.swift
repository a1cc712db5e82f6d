import Foundation

/// The Python interpreter that has the peer clients (nats-py, websockets, redis) installed.
/// `scripts/test` exports it, because the test runner's PATH may find another `python3`.
public enum PythonPeer {
    public static var interpreter: String {
        ProcessInfo.processInfo.environment["SWITCHBOARD_PYTHON"] ?? "python3"
    }
}
