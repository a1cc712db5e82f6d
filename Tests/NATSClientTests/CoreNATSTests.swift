import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

@Suite("Core NATS against a real nats-server")
struct CoreNATSTests {
    @Test func connectToClosedPortFailsFastWithClearError() throws {
        let port = try LoopbackPort.free()
        let url = "nats://127.0.0.1:\(port)"
        let started = ContinuousClock.now
        do {
            _ = try NATSConnection(options: .init(url: url, connectTimeout: .seconds(1), maxReconnects: 0))
            Issue.record("connected to a closed port")
        } catch let error as NATSError {
            guard case .connect(let failedURL, let status) = error else {
                Issue.record("expected .connect, got \(error)")
                return
            }
            #expect(failedURL == url)
            #expect(!status.isEmpty)
            #expect("\(error)".contains(url))
        }
        #expect(ContinuousClock.now - started < .seconds(2))
    }

    @Test func emptyURLIsRejectedBeforeConnecting() {
        #expect(throws: NATSError.invalidArgument("no NATS URL given")) {
            _ = try NATSConnection(options: .init(url: " , "))
        }
    }

    @Test func publishedMessageReachesSubscriberWithPayloadAndHeaders() throws {
        try withNATS { _, connection in
            let received = Collected<NATSMessage>()
            let subscription = try connection.subscribe("room.*") { received.append($0) }
            defer { subscription.unsubscribe() }

            var headers = NATSHeaders()
            headers[HeaderNames.kind] = "typing"
            headers.append(name: "Trace", value: "a")
            headers.append(name: "Trace", value: "b")
            try connection.publish("room.1", payload: bytes("with headers"), headers: headers)
            try connection.publish("room.2", payload: bytes("plain"))
            try [UInt8](repeating: 7, count: 3).withUnsafeBytes { try connection.publish("room.3", payload: $0) }
            try connection.publish("room.4", payload: [])
            try connection.flush(timeout: .seconds(2))

            #expect(eventually(timeout: .seconds(2)) { received.count == 4 })
            let bySubject = Dictionary(uniqueKeysWithValues: received.values.map { ($0.subject, $0) })
            #expect(text(bySubject["room.1"]?.payload ?? []) == "with headers")
            #expect(bySubject["room.1"]?.headers == headers)
            #expect(bySubject["room.1"]?.headers.values(for: "Trace") == ["a", "b"])
            #expect(bySubject["room.1"]?.headers[HeaderNames.kind] == "typing")
            #expect(bySubject["room.2"]?.headers.isEmpty == true)
            #expect(bySubject["room.2"]?.reply == nil)
            #expect(bySubject["room.3"]?.payload == [7, 7, 7])
            #expect(bySubject["room.4"]?.payload == [])
        }
    }

    @Test func headerThatWouldBreakTheWireFormatIsRejected() throws {
        try withNATS { _, connection in
            var headers = NATSHeaders()
            headers["Bad"] = "line\r\nInjected: yes"
            #expect(throws: NATSError.self) { try connection.publish("x", payload: [], headers: headers) }
            #expect(connection.isConnected)
        }
    }

    @Test func queueSubscribersShareMessages() throws {
        try withNATS { _, connection in
            let first = Collected<Int>()
            let second = Collected<Int>()
            let a = try connection.subscribe("work", queue: "workers") { _ in first.append(1) }
            let b = try connection.subscribe("work", queue: "workers") { _ in second.append(1) }
            defer { a.unsubscribe(); b.unsubscribe() }
            for _ in 0..<100 { try connection.publish("work", payload: [1]) }
            try connection.flush(timeout: .seconds(2))
            #expect(eventually(timeout: .seconds(2)) { first.count + second.count == 100 })
        }
    }

    @Test func requestGetsReplyAndFailsWithNoRespondersOrTimeout() throws {
        try withNATS { _, connection in
            let responder = try connection.subscribe("echo") { message in
                guard let reply = message.reply else { return }
                try? connection.publish(reply, payload: bytes(text(message.payload).uppercased()))
            }
            defer { responder.unsubscribe() }
            let silent = try connection.subscribe("silent") { _ in }
            defer { silent.unsubscribe() }
            try connection.flush(timeout: .seconds(2))

            let answer = try connection.request("echo", payload: bytes("hello"), timeout: .seconds(2))
            #expect(text(answer.payload) == "HELLO")

            let started = ContinuousClock.now
            #expect(throws: NATSError.noResponders(subject: "nobody.home")) {
                _ = try connection.request("nobody.home", payload: [], timeout: .seconds(2))
            }
            #expect(ContinuousClock.now - started < .seconds(1))

            #expect(throws: NATSError.self) {
                do {
                    _ = try connection.request("silent", payload: [], timeout: .milliseconds(200))
                } catch let error as NATSError {
                    guard case .timeout = error else { Issue.record("expected .timeout, got \(error)"); return }
                    throw error
                }
            }
        }
    }

    @Test func syncSubscriptionReturnsMessagesAndNilOnTimeout() throws {
        try withNATS { _, connection in
            let inbox = connection.newInbox()
            #expect(inbox.hasPrefix("_INBOX."))
            #expect(inbox != connection.newInbox())
            let subscription = try connection.subscribeSync(inbox)
            #expect(try subscription.nextMessage(timeout: .milliseconds(50)) == nil)
            try connection.publish(inbox, payload: bytes("one"), reply: "answer.here")
            let message = try #require(try subscription.nextMessage(timeout: .seconds(2)))
            #expect(text(message.payload) == "one")
            #expect(message.reply == "answer.here")
            subscription.unsubscribe()
            subscription.unsubscribe()
        }
    }

    @Test func unsubscribeStopsDeliveryAndReleasesTheHandler() throws {
        try withNATS { _, connection in
            final class Captured: Sendable {}
            let received = Collected<Int>()
            weak var weakCaptured: Captured?
            let subscription: NATSSubscription
            do {
                let captured = Captured()
                weakCaptured = captured
                subscription = try connection.subscribe("ticks") { _ in
                    withExtendedLifetime(captured) { received.append(1) }
                }
            }
            try connection.publish("ticks", payload: [])
            try connection.flush(timeout: .seconds(2))
            #expect(eventually(timeout: .seconds(2)) { received.count == 1 })

            subscription.unsubscribe()
            subscription.unsubscribe()
            try connection.publish("ticks", payload: [])
            try connection.flush(timeout: .seconds(2))
            // The handler's box is released by nats.c's on-complete callback.
            #expect(eventually(timeout: .seconds(2)) { weakCaptured == nil })
            #expect(received.count == 1)
        }
    }

    @Test func drainClosesTheConnectionAndCloseIsIdempotent() throws {
        try withNATS { _, connection in
            let received = Collected<Int>()
            let subscription = try connection.subscribe("drain.me") { _ in received.append(1) }
            for _ in 0..<10 { try connection.publish("drain.me", payload: []) }
            #expect(connection.isConnected)
            connection.drain(timeout: .seconds(2))
            #expect(!connection.isConnected)
            #expect(connection.isClosed)
            #expect(received.count == 10)
            connection.close()
            connection.close()
            subscription.unsubscribe()
            #expect(throws: NATSError.connectionClosed(operation: "publish to after.close")) {
                try connection.publish("after.close", payload: [])
            }
        }
    }

    @Test func connectionReconnectsAfterServerRestart() throws {
        let server = try NATSServerFixture()
        defer { server.stop() }
        let connection = try NATSConnection(options: .init(url: server.url, connectTimeout: .seconds(1), reconnectWait: .milliseconds(50)))
        defer { connection.close() }
        let received = Collected<Int>()
        let subscription = try connection.subscribe("after.restart") { _ in received.append(1) }
        defer { subscription.unsubscribe() }
        try server.restart()
        #expect(eventually(timeout: .seconds(5)) { connection.isConnected })
        try connection.publish("after.restart", payload: [])
        try connection.flush(timeout: .seconds(2))
        #expect(eventually(timeout: .seconds(2)) { received.count == 1 })
    }
}
