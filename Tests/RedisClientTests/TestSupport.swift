import Foundation
import RedisClient
import SwitchboardHarness
import Testing

/// All RedisClient tests run one after another: several measure how long something takes,
/// and redis-server processes competing for two cores would make those numbers noisy.
@Suite(.serialized) struct RedisClientTests {}

/// Runs `body` against a fresh redis-server, stopped however `body` ends.
func withRedis<Result>(_ body: (RedisServerFixture) throws -> Result) throws -> Result {
    let server = try RedisServerFixture()
    defer {
        shutDown(server)
        server.stop()
    }
    return try body(server)
}

/// Stops redis-server with `SHUTDOWN NOSAVE` and waits for it to exit.
///
/// Why not `fixture.process.stop()` alone: a child started from a Swift Testing worker
/// thread inherits that thread's signal mask, in which SIGTERM is blocked, and redis-server
/// does not unblock it; the fixture then waits its full 5 s grace before SIGKILL. Going
/// through the protocol makes the stop (and a restart) immediate. `stop()` after this finds
/// the process gone; if the shutdown fails, it still stops the server the slow way.
func shutDown(_ server: RedisServerFixture) {
    guard server.process.isRunning else { return }
    if let redis = try? RedisConnection(url: server.url, timeout: .seconds(1)) {
        _ = try? redis.command(["SHUTDOWN", "NOSAVE"])  // answers by closing the connection
        redis.close()
    }
    server.process.waitForExit(timeout: .seconds(2))
}

/// Collects a subscriber's events so a test can wait for the ones it expects.
final class EventLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [RedisSubscriber.Event] = []

    var handler: @Sendable (RedisSubscriber.Event) -> Void {
        { [self] event in
            condition.lock()
            events.append(event)
            condition.broadcast()
            condition.unlock()
        }
    }

    var all: [RedisSubscriber.Event] {
        condition.lock()
        defer { condition.unlock() }
        return events
    }

    /// Waits until `predicate` holds for the events so far; false after `timeout`.
    @discardableResult
    func wait(timeout: Duration = .seconds(5), until predicate: ([RedisSubscriber.Event]) -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while !predicate(events) {
            if !condition.wait(until: deadline) { return predicate(events) }
        }
        return true
    }

    /// Waits for the `count`-th `.connected`.
    @discardableResult
    func waitForConnected(_ count: Int = 1, timeout: Duration = .seconds(5)) -> Bool {
        wait(timeout: timeout) { $0.filter { $0 == .connected }.count >= count }
    }

    /// Waits for a message with `payload` on `channel`.
    @discardableResult
    func waitForMessage(_ channel: String, _ payload: [UInt8], timeout: Duration = .seconds(5)) -> Bool {
        wait(timeout: timeout) { $0.contains(.message(channel: channel, payload: payload)) }
    }

    var disconnects: Int {
        all.filter { if case .disconnected = $0 { true } else { false } }.count
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
