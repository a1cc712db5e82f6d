import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Synchronization
import Testing

/// `deploy/nats/server.conf` as it is, on TLS: every service connects as its role's user, with only
/// that role's subjects, and the whole path still works — live delivery, typing, a dead
/// letter, a snapshot, a resume's replay, routectl — with no permission violation in the
/// server's log; then each role is refused what belongs to another.
extension EndToEnd {
    @Suite struct LeastPrivilegeTests {
        static func frames(_ socket: WebSocketTestClient, until done: ([[String: Any]]) -> Bool, timeout: Duration = .seconds(10)) throws -> [[String: Any]] {
            let deadline = ContinuousClock.now + timeout
            var frames: [[String: Any]] = []
            while !done(frames) && ContinuousClock.now < deadline {
                guard let text = try socket.receiveText(timeout: .milliseconds(200)) else { continue }
                if let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] { frames.append(object) }
            }
            return frames
        }

        static func socket(_ deployment: Deployment, _ user: String, port: Int, path: String = "/ws") async throws -> WebSocketTestClient {
            let socket = try WebSocketTestClient(port: port, path: path, headers: ["Authorization": "Bearer \(try await deployment.token(user))"])
            _ = try socket.receiveText(timeout: .seconds(5))  // hello
            return socket
        }

        static func violations(_ log: String) -> [Substring] { log.split(separator: "\n").filter { $0.localizedCaseInsensitiveContains("violation") } }

        @Test func everyRoleDoesItsPartWithItsOwnSubjectsAndIsRefusedTheOthers() async throws {
            let deployment = try await Deployment(roles: true)
            defer { deployment.stop() }
            try deployment.startFanout(extra: ["--snapshot-every-changes", "1", "--snapshot-interval-seconds", "1"])
            for user in ["alice", "bob"] { try deployment.join(user, "room") }
            #expect(eventually(timeout: .seconds(10)) { deployment.members(of: "room") == 2 }, "membership through the operator role")
            let n1 = try deployment.startNotifier("notifier-1")
            let n2 = try deployment.startNotifier("notifier-2")
            let alice = try await Self.socket(deployment, "alice", port: n1)
            let bob = try await Self.socket(deployment, "bob", port: n2)
            defer { alice.closeSocket(); bob.closeSocket() }
            #expect(deployment.online(["alice", "bob"]))

            var published: [UInt64] = []
            for index in 0..<3 { published.append(try deployment.publishEvent(channel: "room", id: "e\(index)")) }
            let live = try Self.frames(bob) { $0.filter { $0["type"] as? String == FrameType.event }.count >= 3 }
            #expect(live.filter { $0["type"] as? String == FrameType.event }.compactMap { ($0["seq"] as? NSNumber)?.uint64Value } == published)

            try alice.send(text: #"{"type":"typing","channel":"room"}"#)
            let typing = try Self.frames(bob) { $0.contains { $0["type"] as? String == FrameType.typing } }
            #expect(typing.contains { $0["type"] as? String == FrameType.typing && $0["user"] as? String == "alice" }, "typing through notifier and fan-out")

            // An undecodable event goes to the dead letters.
            _ = try deployment.jetStream.publish(Subjects.event(channel: "room", partitionCount: Deployment.partitionCount), payload: [0xFF, 0x00, 0xFF])
            let port = try #require(deployment.fanoutHTTPPort())
            func metric(_ name: String) -> Double? {
                guard let body = try? HTTPProbe.get(port: port, path: "/metrics").body else { return nil }
                return body.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            #expect(eventually(timeout: .seconds(10)) { metric("switchboard_fanout_dead_lettered_total") == 1 })
            #expect(eventually(timeout: .seconds(10)) { (metric("switchboard_fanout_snapshots_written_total") ?? 0) >= 1 })
            #expect((metric("switchboard_fanout_snapshot_errors_total") ?? 0) == 0)

            // A resume replays from the stream (the notifier's JetStream reads).
            let again = try await Self.socket(deployment, "bob", port: n1, path: "/ws?resume=room:0")
            defer { again.closeSocket() }
            let replay = try Self.frames(again) { $0.contains { $0["type"] as? String == FrameType.resumed } }
            #expect(replay.filter { $0["type"] as? String == FrameType.event }.compactMap { ($0["seq"] as? NSNumber)?.uint64Value } == published)
            #expect(replay.first { $0["type"] as? String == FrameType.resumed }?["complete"] as? Bool == true)

            let stats = try deployment.routectl(["stats", "--timeout", "2"])
            #expect(stats.status == 0, "\(stats.output)")
            #expect(deployment.routectlPlacements("bob") == ["notifier-1", "notifier-2"])

            let log = try #require(deployment.single).process.log()
            #expect(Self.violations(log).isEmpty, "\(Self.violations(log).joined(separator: "\n"))")

            // Each role is refused another's subjects.
            #expect(deployment.natsCA != nil)
            let tls = NATSConnection.Options.TLS(caFile: deployment.natsCA)
            let notifier = try NATSConnection(options: .init(url: deployment.natsURL(user: "notifier-1"), name: "probe-notifier", connectTimeout: .seconds(2), tls: tls))
            defer { notifier.close() }
            #expect(throws: NATSError.self, "a notifier stores no event") {
                _ = try notifier.jetStream(timeout: .milliseconds(500)).publish(Subjects.event(channel: "room", partitionCount: Deployment.partitionCount), payload: [1], timeout: .milliseconds(500))
            }
            let upstream = try NATSConnection(options: .init(url: deployment.natsURL(user: "publisher"), name: "probe-publisher", connectTimeout: .seconds(2), tls: tls))
            defer { upstream.close() }
            let overheard = Collected()
            let tap = try upstream.subscribe(Subjects.inbox(instance: "notifier-2")) { _ in overheard.add() }
            // A notifier may not read another instance's inbox, nor consume membership.
            let neighbour = try notifier.subscribe(Subjects.inbox(instance: "notifier-2")) { _ in overheard.add() }
            defer { neighbour.unsubscribe() }
            #expect(throws: NATSError.self, "a notifier consumes no membership stream") {
                _ = try notifier.jetStream(timeout: .milliseconds(500)).orderedConsumer(stream: StreamNames.membership, filterSubject: ">", startSequence: 0, createTimeout: .milliseconds(500))
            }
            defer { tap.unsubscribe() }
            let operatorConnection = try NATSConnection(options: .init(url: deployment.natsURL(user: "routectl"), name: "probe-routectl", connectTimeout: .seconds(2), tls: tls))
            defer { operatorConnection.close() }
            #expect(throws: NATSError.self, "an operator reads no stream") {
                _ = try operatorConnection.jetStream(timeout: .milliseconds(500)).streamState(StreamNames.events)
            }
            try upstream.flush(timeout: .seconds(2))
            let seq = try deployment.publishEvent(channel: "room", id: "after-probes")
            _ = try Self.frames(bob) { $0.contains { ($0["seq"] as? NSNumber)?.uint64Value == seq } }
            #expect(overheard.count == 0, "neither a publisher nor another notifier hears an inbox")
            let refused = Self.violations(try #require(deployment.single).process.log())
            #expect(refused.filter { $0.contains("notify.inbox.notifier-2") }.count >= 2, "\(refused)")
            #expect(refused.contains { $0.contains("CHAT_MEMBERSHIP") }, "\(refused)")
            #expect(refused.contains { $0.contains("chat.events.") }, "\(refused)")
            #expect(refused.contains { $0.contains("STREAM.INFO") }, "\(refused)")
            // A notifier started with another instance's user: its inbox is refused; the
            // process logs and counts it and does not retry in a spin.
            let misconfigured = try deployment.startNotifier("notifier-3", natsUser: "notifier-0")
            func notifierMetric(_ name: String) -> Double? {
                guard let body = try? HTTPProbe.get(port: UInt16(misconfigured), path: "/metrics").body else { return nil }
                return body.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            #expect(eventually(timeout: .seconds(10)) { (notifierMetric("switchboard_notifier_nats_async_errors_total") ?? 0) >= 1 })
            usleep(1_000_000)
            #expect((notifierMetric("switchboard_notifier_nats_async_errors_total") ?? 0) <= 3, "no spin")
            #expect(try #require(deployment.notifier("notifier-3")).log().contains("NATS server reported an error"))
            // And nothing reaches the server in the clear.
            #expect(throws: NATSError.self, "a plain connection") {
                _ = try NATSConnection(options: .init(url: deployment.natsURL(user: "publisher"), connectTimeout: .seconds(2), maxReconnects: 0))
            }
        }
    }
}

/// Counts calls from nats.c's delivery thread.
private final class Collected: Sendable {
    private let value = Mutex(0)
    func add() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}
