import Foundation
@testable import RedisClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

extension RedisClientTests {
    @Suite struct Connection {
        @Test func connectingToAClosedPortFailsFastWithConnectError() throws {
            let port = try LoopbackPort.free()
            let started = ContinuousClock.now
            do {
                _ = try RedisConnection(url: "redis://127.0.0.1:\(port)", timeout: .seconds(1))
                Issue.record("connected to a closed port")
            } catch let error as RedisError {
                guard case .connect(let address, let reason) = error else { Issue.record("wrong error \(error)"); return }
                #expect(address == "127.0.0.1:\(port)")
                #expect(reason.localizedCaseInsensitiveContains("refused"))
                #expect(error.description.contains("127.0.0.1:\(port)"))
            }
            #expect(ContinuousClock.now - started < .seconds(1))
        }

        @Test func malformedURLsAreRejectedWithInvalidURL() {
            for url in ["127.0.0.1:6379", "http://127.0.0.1:6379", "rediss://host", "redis://", "redis://host:0",
                        "redis://host:99999", "redis://host:port", "redis://host:6379/-1", "redis://host/x", "redis://[::1"] {
                #expect(throws: RedisError.self, "\(url)") { try RedisConnection(url: url) }
                do {
                    _ = try RedisEndpoint(parsing: url)
                    Issue.record("accepted \(url)")
                } catch {
                    guard case .invalidURL = error else { Issue.record("\(url): \(error)"); continue }
                }
            }
        }

        @Test func urlCarriesHostPortDatabaseAndPercentEncodedCredentials() throws {
            #expect(try RedisEndpoint(parsing: "redis://example.org") == RedisEndpoint(host: "example.org", port: 6379))
            #expect(try RedisEndpoint(parsing: "REDIS://10.0.0.1:7000/3") == RedisEndpoint(host: "10.0.0.1", port: 7000, database: 3))
            #expect(try RedisEndpoint(parsing: "redis://:p%40ss@h:1") == RedisEndpoint(host: "h", port: 1, password: "p@ss"))
            #expect(try RedisEndpoint(parsing: "redis://alice:pw@[::1]:6380/") == RedisEndpoint(host: "::1", port: 6380, user: "alice", password: "pw"))
            #expect(try RedisEndpoint(parsing: "redis://:pw@[::1]:6380").address == "[::1]:6380")
            #expect(RedisEndpoint.redacted("redis://:secret@h:1") == "redis://***@h:1")
        }

        @Test func passwordAndDatabaseFromTheURLAreUsed() throws {
            try withRedis { server in
                let admin = try RedisConnection(url: server.url)
                defer { admin.close() }
                try admin.command(["SET", "where", "db0"])
                try admin.command(["CONFIG", "SET", "requirepass", "s3cret"])

                let authed = try RedisConnection(url: "redis://:s3cret@127.0.0.1:\(server.port)/3")
                defer { authed.close() }
                try authed.command(["SET", "where", "db3"])
                #expect(try authed.command(["GET", "where"]).text == "db3")
                #expect(try admin.command(["GET", "where"]).text == "db0")

                #expect {
                    try RedisConnection(url: "redis://:not-the-password@127.0.0.1:\(server.port)")
                } throws: { error in
                    guard case .connect(_, let reason) = error as? RedisError else { return false }
                    return reason.contains("AUTH") && !reason.contains("not-the-password")
                }
                try authed.command(["CONFIG", "SET", "requirepass", ""])  // so that shutDown can connect
            }
        }

        /// `--redis-user` and `--redis-password-file`: an ACL user (Redis 6+) whose password
        /// comes from a file, put into the URL percent-encoded.
        @Test func anACLUserWithItsPasswordFromAFileAuthenticates() throws {
            let files = try TemporaryDirectory(prefix: "switchboard-test-redis-auth")
            defer { files.remove() }
            let passwordFile = files.url.appendingPathComponent("password")
            try "p@ss:w/rd\n".write(to: passwordFile, atomically: true, encoding: .utf8)
            try withRedis { server in
                let admin = try RedisConnection(url: server.url)
                defer { admin.close() }
                try admin.command(["ACL", "SETUSER", "presence", "on", ">p@ss:w/rd", "~*", "&*", "+@all"])
                let url = try RedisURL.withCredentials(server.url, user: "presence", passwordFile: passwordFile.path)
                #expect(!url.contains("p@ss"), "percent-encoded: \(url)")
                let user = try RedisConnection(url: url)
                defer { user.close() }
                #expect(try user.command(["ACL", "WHOAMI"]).text == "presence")
                #expect(throws: RedisError.self) { try RedisConnection(url: "redis://presence:wrong@127.0.0.1:\(server.port)") }
            }
            #expect(try RedisURL.withCredentials("redis://old:pw@h:1/2", user: nil, passwordFile: passwordFile.path) == "redis://:p%40ss%3Aw%2Frd@h:1/2")
            #expect(try RedisURL.withCredentials("redis://h:1", user: nil, passwordFile: nil) == "redis://h:1")
            #expect(throws: RedisError.self) { try RedisURL.withCredentials("redis://h:1", user: "u", passwordFile: nil) }
            #expect(throws: RedisError.self) { try RedisURL.withCredentials("redis://h:1", user: "u", passwordFile: files.url.appendingPathComponent("missing").path) }
        }

        @Test func binaryKeysAndValuesRoundTripUnchanged() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                let everyByte = (0...255).map(UInt8.init)
                let key: [UInt8] = [0, 13, 10, 0xFF, 0x20]
                #expect(try redis.command(bytes: [bytes("SET"), key, everyByte + everyByte]) == .status("OK"))
                #expect(try redis.command(bytes: [bytes("GET"), key]) == .string(everyByte + everyByte))
                #expect(try redis.command(bytes: [bytes("SET"), bytes("empty"), []]) == .status("OK"))
                #expect(try redis.command(["GET", "empty"]) == .string([]))
                #expect(try redis.command(["SET", "text", "grüße\r\n$3\r\n"]) == .status("OK"))
                #expect(try redis.command(["GET", "text"]).text == "grüße\r\n$3\r\n")
                #expect(try redis.command(["GET", "missing"]) == .null)
                #expect(try redis.command(["MGET", "text", "missing"]).array == [.string(bytes("grüße\r\n$3\r\n")), .null])
                #expect(try redis.command(["STRLEN", "text"]).integer == 13)
                #expect(RedisReply.string([0xFF]).text == nil)
            }
        }

        @Test func errorReplyThrowsServerErrorWithRedisMessageAndConnectionStaysUsable() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                #expect {
                    try redis.command(["NOSUCHCOMMAND", "key"])
                } throws: { error in
                    guard case .server(let command, let message) = error as? RedisError else { return false }
                    return command == "NOSUCHCOMMAND key" && message.hasPrefix("ERR unknown command")
                }
                try redis.command(["SET", "n", "abc"])
                #expect(throws: RedisError.server(command: "INCR n", message: "ERR value is not an integer or out of range")) {
                    try redis.incr("n")
                }
                #expect(try redis.command(["PING"]) == .status("PONG"))
            }
        }

        @Test func pipelineOfAThousandCommandsReturnsRepliesInOrderWithErrorsInPlace() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                var commands = (1...999).map { ["RPUSH", "list", "item\($0)"] }
                commands.insert(["NOSUCHCOMMAND"], at: 500)
                let replies = try redis.pipeline(commands)
                #expect(replies.count == 1000)
                #expect(replies[..<500].map(\.integer) == (1...500).map { Int64($0) })
                guard case .error(let message) = replies[500] else { Issue.record("got \(replies[500])"); return }
                #expect(message.hasPrefix("ERR unknown command"))
                #expect(replies[501...].map(\.integer) == (501...999).map { Int64($0) })
                #expect(try redis.command(["LINDEX", "list", "998"]).text == "item999")
                #expect(try redis.pipeline([]).isEmpty)
            }
        }

        @Test func hscanCollectsEveryFieldOfALargeHash() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                let expected = Dictionary(uniqueKeysWithValues: (0..<1500).map { ("user-\($0)", "\($0 % 97)") })
                try redis.hset(PresenceKeys.users(instance: "a"), expected.map { ($0.key, $0.value) })
                try redis.hdel(PresenceKeys.users(instance: "a"), ["user-0", "user-1", "nobody"])
                try redis.hset(PresenceKeys.users(instance: "a"), [])
                try redis.hdel(PresenceKeys.users(instance: "a"), [])

                var collected: [String: String] = [:]
                var cursor: UInt64 = 0
                var pages = 0
                repeat {
                    let page = try redis.hscan(PresenceKeys.users(instance: "a"), cursor: cursor, count: 100)
                    for (field, value) in page.pairs { collected[field] = value }
                    cursor = page.next
                    pages += 1
                } while cursor != 0
                var remaining = expected
                remaining["user-0"] = nil
                remaining["user-1"] = nil
                #expect(collected == remaining)
                #expect(pages > 1)

                let empty = try redis.hscan(PresenceKeys.users(instance: "none"), cursor: 0, count: 10)
                #expect(empty.next == 0 && empty.pairs.isEmpty)
            }
        }

        @Test func zrangeByScoreHonoursInfinitiesAndInclusiveBounds() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                #expect(try redis.zadd(PresenceKeys.instances, score: 1_700_000_000_123, member: "a") == 1)
                #expect(try redis.zadd(PresenceKeys.instances, score: -2.5, member: "b") == 1)
                #expect(try redis.zadd(PresenceKeys.instances, score: .infinity, member: "c") == 1)
                #expect(try redis.zadd(PresenceKeys.instances, score: 10, member: "d") == 1)
                #expect(try redis.zadd(PresenceKeys.instances, score: 11, member: "d") == 0)

                let all = try redis.zrangeByScore(PresenceKeys.instances, min: -.infinity, max: .infinity)
                #expect(all.map(\.member) == ["b", "d", "a", "c"])
                #expect(all.map(\.score) == [-2.5, 11, 1_700_000_000_123, .infinity])
                #expect(try redis.zrangeByScore(PresenceKeys.instances, min: 11, max: 1_700_000_000_123).map(\.member) == ["d", "a"])
                #expect(try redis.zrangeByScore(PresenceKeys.instances, min: 12, max: 100).isEmpty)
                #expect(try redis.zrangeByScore("missing", min: -.infinity, max: .infinity).isEmpty)

                try redis.zrem(PresenceKeys.instances, member: "d")
                try redis.zrem(PresenceKeys.instances, member: "never-there")
                #expect(try redis.zrangeByScore(PresenceKeys.instances, min: -10, max: 100).map(\.member) == ["b"])
                #expect(throws: RedisError.self) { try redis.zadd(PresenceKeys.instances, score: .nan, member: "x") }
            }
        }

        @Test func helpersOnAKeyOfTheWrongTypeThrowWrongTypeServerErrors() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                try redis.command(["SET", "plain", "value"])
                let helpers: [(String, () throws -> Void)] = [
                    ("ZRANGEBYSCORE plain", { _ = try redis.zrangeByScore("plain", min: 0, max: 1) }),
                    ("HSCAN plain", { _ = try redis.hscan("plain", cursor: 0, count: 10) }),
                    ("HSET plain", { try redis.hset("plain", [("f", "v")]) }),
                    ("HDEL plain", { try redis.hdel("plain", ["f"]) }),
                    ("ZADD plain", { _ = try redis.zadd("plain", score: 1, member: "m") }),
                    ("ZREM plain", { try redis.zrem("plain", member: "m") }),
                ]
                for (command, helper) in helpers {
                    #expect("\(command)") {
                        try helper()
                    } throws: { error in
                        guard case .server(let name, let message) = error as? RedisError else { return false }
                        return name == command && message.hasPrefix("WRONGTYPE")
                    }
                }
            }
        }

        @Test func repliesOfTheWrongShapeBecomeUnexpectedReplyErrors() {
            func isUnexpected(_ body: () throws -> Void) -> Bool {
                do { try body(); return false } catch { if case .unexpectedReply = error as? RedisError { return true }; return false }
            }
            #expect(isUnexpected { _ = try RedisConnection.expectInteger(.status("OK"), command: "INCR k") })
            #expect(isUnexpected { _ = try RedisConnection.scoredMembers(.integer(3), command: "Z") })
            #expect(isUnexpected { _ = try RedisConnection.scoredMembers(.array([.string(bytes("m"))]), command: "Z") })
            #expect(isUnexpected { _ = try RedisConnection.scoredMembers(.array([.string(bytes("m")), .string(bytes("x"))]), command: "Z") })
            #expect(isUnexpected { _ = try RedisConnection.pairs([.string([0xFF]), .string([])], command: "H") })
            #expect(isUnexpected { _ = try RedisConnection.pairs([.array([]), .null], command: "H") })
            let scored = try? RedisConnection.scoredMembers(.array([.string(bytes("m")), .string(bytes("-inf"))]), command: "Z")
            #expect(scored?.first?.score == -.infinity)
            #expect(RedisError.unexpectedReply(command: "INCR k", expected: "integer", got: "status \"OK\"").description
                == "unexpected Redis reply to INCR k: expected integer, got status \"OK\"")
        }

        @Test func slowReplyTimesOutWithIOErrorAndTheNextCommandReconnects() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url, timeout: .milliseconds(300))
                defer { redis.close() }
                let started = ContinuousClock.now
                #expect(throws: RedisError.io(command: "BLPOP never", reason: "timed out after 300 ms")) {
                    try redis.command(["BLPOP", "never", "5"])
                }
                #expect(ContinuousClock.now - started < .seconds(1))
                #expect(try redis.command(["PING"]) == .status("PONG"))
            }
        }

        @Test func commandsAfterAServerOutageFailThenReconnectLazily() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url, timeout: .seconds(1))
                defer { redis.close() }
                try redis.command(["SET", "k", "v"])

                shutDown(server)
                #expect {
                    try redis.command(["GET", "k"])
                } throws: { error in
                    guard case .io(let command, _) = error as? RedisError else { return false }
                    return command == "GET k"
                }
                #expect {
                    try redis.command(["GET", "k"])
                } throws: { error in
                    guard case .connect(let address, _) = error as? RedisError else { return false }
                    return address == "127.0.0.1:\(server.port)"
                }

                try server.restart()  // the old process is gone; this starts a new one on the port
                #expect(try redis.command(["GET", "k"]) == .null)
                #expect(try redis.incr("k") == 1)
            }
        }

        @Test func writingToAConnectionTheServerDroppedThrowsInsteadOfRaisingSIGPIPE() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                defer { redis.close() }
                let id = try #require(try redis.command(["CLIENT", "ID"]).integer)
                let killer = try RedisConnection(url: server.url)
                defer { killer.close() }
                try killer.command(["CLIENT", "KILL", "ID", "\(id)"])
                // Large enough for several write() calls: the ones after the peer's reset fail with EPIPE.
                let big = [UInt8](repeating: 0x61, count: 32 << 20)
                #expect(throws: RedisError.self) { try redis.command(bytes: [bytes("SET"), bytes("big"), big]) }
                #expect(try redis.command(["PING"]) == .status("PONG"))
            }
        }

        @Test func closeIsIdempotentAndLaterCommandsThrowClosed() throws {
            try withRedis { server in
                let redis = try RedisConnection(url: server.url)
                redis.close()
                redis.close()
                #expect(throws: RedisError.closed) { try redis.command(["PING"]) }
                #expect(throws: RedisError.closed) { try redis.pipeline([["PING"]]) }
                #expect(throws: RedisError.closed) { try redis.publish("c", []) }
            }
        }

        @Test func concurrentCallersAreSerializedSafely() async throws {
            let server = try RedisServerFixture()
            defer {
                shutDown(server)
                server.stop()
            }
            let redis = try RedisConnection(url: server.url)
            defer { redis.close() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask { for _ in 0..<250 { _ = try redis.incr("counter") } }
                }
                try await group.waitForAll()
            }
            #expect(try redis.command(["GET", "counter"]).text == "1000")
        }
    }
}
