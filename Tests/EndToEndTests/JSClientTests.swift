import Foundation
import NATSClient
import RedisClient
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension EndToEnd {
    /// The JavaScript client library (`clients/js/switchboard.js`) in Node against a real
    /// deployment: it drops duplicates, heals a gap by resuming the channel, moves to the next
    /// notifier when one drains (4000) and when one is killed, without losing or repeating
    /// what was published meanwhile, and reports a stream created anew. The application is
    /// `clients/js/test/peer.mjs`, which prints what the library hands over.
    @Test func javaScriptClientDropsDuplicatesHealsAGapFailsOverAndNoticesANewEpoch() async throws {
        let deployment = try await Deployment()
        defer { deployment.stop() }
        let channel = "room-a"
        #expect(try deployment.startFanout(members: ["alice"], of: [channel]))
        let n1 = try deployment.startNotifier("n1")
        let n2 = try deployment.startNotifier("n2")
        let n3 = try deployment.startNotifier("n3")
        let logs = try TemporaryDirectory(prefix: "switchboard-test-js")
        defer { logs.remove() }
        let script = RepositoryPaths.root.appendingPathComponent("clients/js/test/peer.mjs").path
        let peer = try ServerProcess(
            name: "peer.mjs", executable: ServerProcess.resolve("node"),
            arguments: ["--experimental-websocket", "--no-warnings", script, "ws://127.0.0.1:\(n1)/ws,ws://127.0.0.1:\(n2)/ws,ws://127.0.0.1:\(n3)/ws"],
            environment: ["SWITCHBOARD_TOKEN": try await deployment.token("alice")], logURL: logs.url.appendingPathComponent("peer.log")
        )
        defer { peer.stop() }
        func lines(_ kind: String) -> [[String: Any]] {
            peer.log().split(separator: "\n").compactMap { ChatClient.json(String($0)) }.filter { $0["kind"] as? String == kind }
        }
        func events() -> [(id: String, seq: UInt64, prev: UInt64)] {
            lines("event").map { ($0["id"] as? String ?? "", ($0["seq"] as? NSNumber)?.uint64Value ?? 0, ($0["prev"] as? NSNumber)?.uint64Value ?? 0) }
        }
        #expect(eventually(timeout: .seconds(10)) { lines("state").contains { $0["state"] as? String == "open" } }, "\(peer.log())")
        #expect(deployment.online(["alice"]))

        var published: [String] = []
        func publish(_ id: String) throws -> UInt64 {
            published.append(id)
            return try deployment.publishEvent(channel: channel, id: id)
        }
        for index in 0..<3 { _ = try publish("live-\(index)") }
        #expect(eventually(timeout: .seconds(10)) { events().map(\.id) == published }, "\(peer.log())")

        // A delivery lost on the way: with the fan-out down, two events are stored and n1 is
        // handed only the second (as a fan-out that lost the first one's delivery would), twice.
        deployment.fanout()?.stop(grace: .seconds(5))
        let missedSeq = try publish("missed")
        let laterSeq = try publish("later")
        let later = try #require(try deployment.jetStream.nextMessage(stream: StreamNames.events, matching: Subjects.event(channel: channel, partitionCount: Deployment.partitionCount), atOrAfter: laterSeq))
        let redis = try RedisConnection(url: deployment.redis.url, timeout: .seconds(2))
        defer { redis.close() }
        let slot = try #require(try redis.command(["HGET", PresenceKeys.users(instance: "n1"), "alice"]).text.flatMap { UInt32($0) })
        let epoch = StreamEpoch.of(createdNs: try deployment.jetStream.streamState(StreamNames.events).createdNs)
        let forged = Deliveries(epoch: epoch, deliveries: [Delivery(streamSeq: laterSeq, channelID: channel, event: later.payload, slots: [slot], prevSeq: missedSeq)])
        for _ in 0..<2 { try deployment.connection.publish(Subjects.inbox(instance: "n1"), payload: forged.encoded()) }
        try deployment.connection.flush(timeout: .seconds(2))
        #expect(eventually(timeout: .seconds(10)) { events().map(\.id) == published }, "gap healed from the stream, duplicate dropped:\n\(peer.log())")

        // The fan-out comes back and delivers both again (unacked): dropped as duplicates.
        try deployment.restartFanout()
        _ = try publish("after-restart")
        #expect(eventually(timeout: .seconds(15)) { events().map(\.id) == published }, "\(peer.log())")

        // n1 drains (close 4000): the client moves to n2 and resumes; nothing published
        // meanwhile is lost or repeated.
        let notifier1 = try #require(deployment.notifier("n1"))
        notifier1.send(SIGTERM)
        for index in 0..<5 {
            _ = try publish("failover-\(index)")
            usleep(100_000)
        }
        #expect(eventually(timeout: .seconds(20)) { events().map(\.id) == published }, "\(peer.log())")
        #expect(lines("state").contains { $0["state"] as? String == "open" && ($0["url"] as? String)?.contains(":\(n2)/") == true }, "\(peer.log())")
        // n2 is killed: the client moves to n3 and resumes what n2 never delivered.
        let notifier2 = try #require(deployment.notifier("n2"))
        notifier2.send(SIGKILL)
        for index in 0..<5 {
            _ = try publish("after-kill-\(index)")
            usleep(100_000)
        }
        #expect(eventually(timeout: .seconds(20)) { events().map(\.id) == published }, "\(peer.log())")
        #expect(lines("state").contains { $0["state"] as? String == "open" && ($0["url"] as? String)?.contains(":\(n3)/") == true }, "\(peer.log())")
        let received = events()
        #expect(zip(received, received.dropFirst()).allSatisfy { $0.seq == $1.prev }, "every event chains to the one before it")
        #expect(lines("resync").isEmpty, "\(lines("resync"))")

        // The stream is created anew: the client says so and takes the new numbering.
        deployment.fanout()?.stop(grace: .seconds(5))
        _ = try deployment.connection.request("$JS.API.STREAM.DELETE.\(StreamNames.events)", payload: [], timeout: .seconds(5))
        try deployment.restartFanout()
        _ = try publish("new-stream")
        #expect(eventually(timeout: .seconds(15)) { events().map(\.id) == published }, "\(peer.log())")
        #expect(lines("resync").contains { $0["reason"] as? String == "epoch_changed" && $0["channel"] as? String == channel }, "\(peer.log())")
        let newEpoch = try #require(lines("event").last?["epoch"] as? String)
        #expect(newEpoch != epoch)
        report("JS client: \(received.count + 1) events, each once and chained; gap at seq \(missedSeq) healed; moved to n2 on drain and to n3 when n2 was killed; epoch \(epoch) → \(newEpoch) reported")
    }
}
