import Foundation
import RedisClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

extension RedisClientTests {
    @Suite struct Subscriber {
        @Test func subscriberReportsConnectedThenDeliversMessagesIncludingBinaryPayloads() throws {
            try withRedis { server in
                let log = EventLog()
                let subscriber = try RedisSubscriber(url: server.url, channels: [PresenceKeys.channel, "other"], handler: log.handler)
                defer { subscriber.stop() }
                #expect(log.waitForConnected())
                #expect(log.all == [.connected])

                let publisher = try RedisConnection(url: server.url)
                defer { publisher.close() }
                let everyByte = (0...255).map(UInt8.init)
                #expect(try publisher.publish(PresenceKeys.channel, everyByte) == 1)
                #expect(try publisher.publish("other", []) == 1)
                #expect(try publisher.publish("unsubscribed", bytes("nobody")) == 0)
                #expect(try publisher.publish(PresenceKeys.channel, bytes("last")) == 1)
                #expect(log.waitForMessage(PresenceKeys.channel, bytes("last")))
                #expect(log.all == [
                    .connected,
                    .message(channel: PresenceKeys.channel, payload: everyByte),
                    .message(channel: "other", payload: []),
                    .message(channel: PresenceKeys.channel, payload: bytes("last")),
                ])
            }
        }

        @Test func subscriberSurvivesAServerRestartAndKeepsReceiving() throws {
            try withRedis { server in
                let log = EventLog()
                let subscriber = try RedisSubscriber(url: server.url, channels: [PresenceKeys.channel], reconnectDelay: .milliseconds(50), handler: log.handler)
                defer { subscriber.stop() }
                #expect(log.waitForConnected())

                shutDown(server)
                try server.restart()
                #expect(log.waitForConnected(2))
                let events = log.all
                guard events.count == 3, case .disconnected(let reason) = events[1] else {
                    Issue.record("expected connected, disconnected, connected; got \(events)")
                    return
                }
                #expect(reason.contains("SUBSCRIBE"))

                let publisher = try RedisConnection(url: server.url)
                defer { publisher.close() }
                #expect(try publisher.publish(PresenceKeys.channel, bytes("after restart")) == 1)
                #expect(log.waitForMessage(PresenceKeys.channel, bytes("after restart")))
            }
        }

        @Test func subscriberDetectsAHungServerByHealthCheckAndRecovers() throws {
            try withRedis { server in
                let log = EventLog()
                let subscriber = try RedisSubscriber(
                    url: server.url, channels: [PresenceKeys.channel], reconnectDelay: .milliseconds(50),
                    timeout: .milliseconds(300), healthCheckInterval: .milliseconds(200), handler: log.handler
                )
                defer { subscriber.stop() }
                #expect(log.waitForConnected())

                server.process.send(SIGSTOP)
                let paused = ContinuousClock.now
                #expect(log.wait(timeout: .seconds(3)) { $0.count == 2 })
                #expect(ContinuousClock.now - paused < .seconds(2))
                guard case .disconnected(let reason) = log.all.last else { Issue.record("got \(log.all)"); return }
                #expect(reason.contains("PING"))

                server.process.send(SIGCONT)
                #expect(log.waitForConnected(2))
                let publisher = try RedisConnection(url: server.url)
                defer { publisher.close() }
                try publisher.publish(PresenceKeys.channel, bytes("awake"))
                #expect(log.waitForMessage(PresenceKeys.channel, bytes("awake")))
                #expect(log.disconnects == 1)
            }
        }

        @Test func unreachableServerIsReportedOnceAndRetriedUntilStopped() throws {
            let port = try LoopbackPort.free()
            let log = EventLog()
            let subscriber = try RedisSubscriber(url: "redis://127.0.0.1:\(port)", channels: [PresenceKeys.channel], reconnectDelay: .milliseconds(20), handler: log.handler)
            #expect(log.wait(timeout: .seconds(2)) { !$0.isEmpty })
            Thread.sleep(forTimeInterval: 0.3)  // several more attempts, none reported again
            let started = ContinuousClock.now
            subscriber.stop()
            #expect(ContinuousClock.now - started < .seconds(1))
            let events = log.all
            guard events.count == 1, case .disconnected(let reason) = events[0] else { Issue.record("got \(events)"); return }
            #expect(reason.contains("127.0.0.1:\(port)"))
            #expect(reason.localizedCaseInsensitiveContains("refused"))
        }

        @Test func stopReturnsQuicklyAndNoEventFollowsIt() throws {
            try withRedis { server in
                let log = EventLog()
                let subscriber = try RedisSubscriber(url: server.url, channels: [PresenceKeys.channel], handler: log.handler)
                #expect(log.waitForConnected())
                let started = ContinuousClock.now
                subscriber.stop()
                subscriber.stop()
                #expect(ContinuousClock.now - started < .seconds(1))

                let publisher = try RedisConnection(url: server.url)
                defer { publisher.close() }
                #expect(try publisher.publish(PresenceKeys.channel, bytes("too late")) == 0)  // the subscription is gone
                Thread.sleep(forTimeInterval: 0.1)
                #expect(log.all == [.connected])
            }
        }

        @Test func handlerMayStopItsOwnSubscriber() throws {
            try withRedis { server in
                let log = EventLog()
                let box = SubscriberBox()
                let subscriber = try RedisSubscriber(url: server.url, channels: [PresenceKeys.channel]) { event in
                    log.handler(event)
                    if case .message = event { box.subscriber?.stop() }
                }
                box.subscriber = subscriber
                defer {
                    subscriber.stop()
                    box.subscriber = nil  // breaks the cycle handler → box → subscriber
                }
                #expect(log.waitForConnected())
                let publisher = try RedisConnection(url: server.url)
                defer { publisher.close() }
                try publisher.publish(PresenceKeys.channel, bytes("stop now"))
                try publisher.publish(PresenceKeys.channel, bytes("ignored"))
                #expect(log.waitForMessage(PresenceKeys.channel, bytes("stop now")))
                Thread.sleep(forTimeInterval: 0.1)
                #expect(log.all == [.connected, .message(channel: PresenceKeys.channel, payload: bytes("stop now"))])
            }
        }

        @Test func messagesPublishedWithRedisCliReachTheSubscriber() throws {
            try withRedis { server in
                let log = EventLog()
                let subscriber = try RedisSubscriber(url: server.url, channels: [PresenceKeys.channel], handler: log.handler)
                defer { subscriber.stop() }
                #expect(log.waitForConnected())

                let cli = Process()
                cli.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                cli.arguments = ["redis-cli", "-h", "127.0.0.1", "-p", "\(server.port)", "PUBLISH", PresenceKeys.channel, "from redis-cli"]
                let output = Pipe()
                cli.standardOutput = output
                try cli.run()
                cli.waitUntilExit()
                let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(cli.terminationStatus == 0)
                #expect(printed.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
                #expect(log.waitForMessage(PresenceKeys.channel, bytes("from redis-cli")))
            }
        }

        @Test func invalidURLIsTheOnlyErrorTheSubscriberThrows() throws {
            #expect(throws: RedisError.invalidURL("scheme \"http\" is not supported; expected redis:// (no TLS)")) {
                try RedisSubscriber(url: "http://127.0.0.1:1", channels: ["x"]) { _ in }
            }
        }
    }
}

/// Lets a handler reach the subscriber it belongs to.
private final class SubscriberBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: RedisSubscriber?
    var subscriber: RedisSubscriber? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
