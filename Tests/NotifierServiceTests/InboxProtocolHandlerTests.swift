import Foundation
import Logging
import NATSClient
import NIOCore
import NIOEmbedded
import NIOWebSocket
import SwitchboardContracts
import SwitchboardProto
import Testing
@testable import NotifierService

/// The inbox connection's protocol handler driven through `EmbeddedChannel`: the handshake,
/// messages cut anywhere by the reads, PING/PONG, and refusals. The session it delivers to is
/// a real `WebSocketSession` on the same loop (slot 0).
@Suite struct InboxProtocolHandlerTests {
    private struct Inbox {
        let channel: EmbeddedChannel
        let ready: EventLoopFuture<Void>
    }

    private static func inbox(on session: HandlerTests.Harness) throws -> Inbox {
        let loop = session.channel.embeddedEventLoop
        let channel = EmbeddedChannel(loop: loop)
        let ready = loop.makePromise(of: Void.self)
        let login = PlainLogin(host: "127.0.0.1", port: 4222, connectLine: Array("CONNECT {}\r\n".utf8), redactedURL: "nats://127.0.0.1:4222")
        let dispatcher = InboxDispatcher(registry: session.registry, metrics: NotifierMetrics(), epoch: CurrentEpoch("ep7"), logger: Logger(label: "test"))
        try channel.pipeline.syncOperations.addHandler(InboxProtocolHandler(
            login: login, subscribe: Array("SUB notify.inbox.n1 1\r\nPING\r\n".utf8), ready: ready, pingInterval: .seconds(60),
            dispatcher: dispatcher, logger: Logger(label: "test")
        ))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4222)).wait()
        return Inbox(channel: channel, ready: ready.futureResult)
    }

    private final class Flag: @unchecked Sendable { var value = false }

    /// On the embedded loop a completed future runs its callback at once.
    private static func isComplete(_ future: EventLoopFuture<Void>) -> Bool {
        let flag = Flag()
        future.whenComplete { _ in flag.value = true }
        return flag.value
    }

    private static func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    private static func texts(_ session: HandlerTests.Harness) throws -> [String] {
        session.channel.embeddedEventLoop.run()
        var texts: [String] = []
        while let frame = try session.channel.readOutbound(as: WebSocketFrame.self) { texts.append(String(buffer: frame.data)) }
        return texts
    }

    /// `MSG` frames of a `Deliveries` message each, for slot 0, one per `(seq, text)` group.
    private static func messages(_ groups: [[(seq: UInt64, text: String)]]) -> [UInt8] {
        var bytes: [UInt8] = []
        for group in groups {
            let deliveries = group.map { item in
                let event = ChatEvent(eventID: "e\(item.seq)", channelID: "general", senderID: "s", createdAtMs: 1, body: .messageCreated(messageID: "m\(item.seq)", text: item.text))
                return Delivery(streamSeq: item.seq, channelID: "general", event: event.encoded(), slots: [0])
            }
            let payload = Deliveries(epoch: "", deliveries: deliveries).encoded()
            bytes += Array("MSG notify.inbox.n1 1 \(payload.count)\r\n".utf8) + payload + Array("\r\n".utf8)
        }
        return bytes
    }

    private static func subscribed(_ session: HandlerTests.Harness) throws -> Inbox {
        let inbox = try inbox(on: session)
        try inbox.channel.writeInbound(ByteBuffer(string: #"INFO {"server_id":"x","headers":true,"max_payload":1048576}"# + "\r\n"))
        let handshake = try written(inbox.channel)
        #expect(handshake.hasPrefix("CONNECT {"))
        #expect(handshake.hasSuffix("\r\nSUB notify.inbox.n1 1\r\nPING\r\n"))
        #expect(!Self.isComplete(inbox.ready))
        try inbox.channel.writeInbound(ByteBuffer(string: "PONG\r\n"))
        #expect(Self.isComplete(inbox.ready))
        return inbox
    }

    @Test func messagesCutAnywhereByTheReadsReachTheSocketOnceAndInOrder() throws {
        let bytes = Self.messages([[(1, "one"), (2, "two")], [(3, "three")], [(4, "four")]])
        // Every cut of the bytes into two reads, and one read a byte at a time.
        for cut in Array(stride(from: 1, to: bytes.count, by: 7)) + [0] {
            let session = try HandlerTests.session()
            _ = try Self.texts(session)  // hello
            let inbox = try Self.subscribed(session)
            if cut == 0 {
                for byte in bytes { try inbox.channel.writeInbound(ByteBuffer(bytes: [byte])) }
            } else {
                try inbox.channel.writeInbound(ByteBuffer(bytes: bytes[..<cut]))
                try inbox.channel.writeInbound(ByteBuffer(bytes: bytes[cut...]))
            }
            let texts = try Self.texts(session)
            #expect(texts.count == 4, "cut at \(cut)")
            for (text, expected) in zip(texts, ["one", "two", "three", "four"]) {
                #expect(text.contains(#""text":"\#(expected)""#), "cut at \(cut): \(text)")
            }
            _ = try? inbox.channel.finish()
            _ = try? session.channel.finish()
        }
    }

    @Test func serverPingsAreAnsweredAndTypingComesAsAFrame() throws {
        let session = try HandlerTests.session()
        _ = try Self.texts(session)
        let inbox = try Self.subscribed(session)
        try inbox.channel.writeInbound(ByteBuffer(string: "PING\r\n"))
        #expect(try Self.written(inbox.channel) == "PONG\r\n")
        let typing = Typing(channelID: "general", userID: "bob", slots: [0]).encoded()
        let headers = "NATS/1.0\r\n\(InboxKind.header): \(InboxKind.typing)\r\n\r\n"
        var frame = Array("HMSG notify.inbox.n1 1 \(headers.utf8.count) \(headers.utf8.count + typing.count)\r\n\(headers)".utf8)
        frame += typing + Array("\r\n".utf8)
        try inbox.channel.writeInbound(ByteBuffer(bytes: frame))
        let texts = try Self.texts(session)
        #expect(texts.count == 1)
        #expect(texts.first?.contains(#""type":"typing""#) == true)
        #expect(texts.first?.contains(#""user":"bob""#) == true)
        _ = try? inbox.channel.finish()
        _ = try? session.channel.finish()
    }

    @Test func aRefusedLoginFailsTheSubscriptionAndClosesTheConnection() throws {
        let session = try HandlerTests.session()
        let inbox = try Self.inbox(on: session)
        try inbox.channel.writeInbound(ByteBuffer(string: #"INFO {"headers":true}"# + "\r\n"))
        _ = try Self.written(inbox.channel)
        try inbox.channel.writeInbound(ByteBuffer(string: "-ERR 'Authorization Violation'\r\n"))
        #expect(throws: NATSError.self) { try inbox.ready.wait() }
        #expect(!inbox.channel.isActive)
        _ = try? session.channel.finish()
    }

    @Test func aServerThatRequiresTLSIsLeftToNATSC() throws {
        let session = try HandlerTests.session()
        let inbox = try Self.inbox(on: session)
        try inbox.channel.writeInbound(ByteBuffer(string: #"INFO {"headers":true,"tls_required":true}"# + "\r\n"))
        #expect(throws: NATSError.unsupported("notifier inbox of a server that requires TLS")) { try inbox.ready.wait() }
        #expect(try Self.written(inbox.channel).isEmpty)
        _ = try? session.channel.finish()
    }

    @Test func garbageFromTheServerClosesTheConnection() throws {
        let session = try HandlerTests.session()
        let inbox = try Self.subscribed(session)
        try inbox.channel.writeInbound(ByteBuffer(string: "WHAT is this\r\n"))
        #expect(!inbox.channel.isActive)
        _ = try? session.channel.finish()
    }
}
