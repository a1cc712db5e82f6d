import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOWebSocket
import ServiceSupport
import SwitchboardContracts
import Testing
@testable import NotifierService

/// The pipeline's handlers driven through `EmbeddedChannel`, without sockets.
@Suite struct HandlerTests {
    // MARK: Helpers

    private static func textFrame(_ text: String) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text))
    }

    private static func readFrames(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    private static func closeCode(_ frame: WebSocketFrame?) -> UInt16? {
        guard let frame, frame.opcode == .connectionClose else { return nil }
        var data = frame.unmaskedData
        return data.readInteger(as: UInt16.self)
    }

    struct Harness {
        let channel: EmbeddedChannel
        let session: WebSocketSession
        let registry: SessionRegistry
        let published: Recorder<(String, String)>
    }

    final class Recorder<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [T] = []
        func append(_ item: T) { lock.withLock { items.append(item) } }
        var all: [T] { lock.withLock { items } }
    }

    /// A replayer whose replays the test completes by hand.
    final class HeldReplayer: EventReplaying, @unchecked Sendable {
        var pending: [(channel: String, after: UInt64, promise: EventLoopPromise<ReplayOutcome>)] = []
        func replay(channel: String, user: String, after: UInt64, epoch: String?, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayOutcome> {
            let promise = eventLoop.makePromise(of: ReplayOutcome.self)
            pending.append((channel, after, promise))
            return promise.futureResult
        }
    }

    /// A session whose replayer holds every request until the test answers it, with its hello
    /// frame already read: the resume tests' starting point.
    private static func sessionWithHeldReplayer() throws -> (Harness, HeldReplayer) {
        let replayer = HeldReplayer()
        let h = try session(replayer: replayer)
        _ = try readFrames(h.channel)
        return (h, replayer)
    }

    static func session(user: String = "alice", heartbeat: TimeAmount = .seconds(15), replayer: (any EventReplaying)? = nil) throws -> Harness {
        let channel = EmbeddedChannel()
        let metrics = NotifierMetrics()
        let registry = SessionRegistry(maxConnections: 10, slotReuseDelay: .zero, metrics: metrics)
        let published = Recorder<(String, String)>()
        let environment = SessionEnvironment(
            instanceID: "n1", registry: registry, metrics: metrics, heartbeatInterval: heartbeat,
            closeHandshakeTimeout: .seconds(1), typingPerSecond: 1,
            publishTyping: { published.append(($0, $1)) }, replayer: replayer, logger: Logger(label: "test"),
            epoch: CurrentEpoch("ep7")
        )
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let session = WebSocketSession(userID: user, eventLoop: channel.eventLoop, environment: environment)
        try channel.pipeline.syncOperations.addHandler(session)
        return Harness(channel: channel, session: session, registry: registry, published: published)
    }

    // MARK: WebSocketSession

    @Test func sessionGreetsRegistersAndAnswersPings() throws {
        let h = try Self.session()
        let hello = try #require(try h.channel.readOutbound(as: WebSocketFrame.self))
        #expect(String(buffer: hello.data).contains(#""type":"hello""#))
        #expect(h.registry.socketCount == 1)
        try h.channel.writeInbound(Self.textFrame(#"{"type":"ping"}"#))
        let pong1 = try #require(try h.channel.readOutbound(as: WebSocketFrame.self))
        #expect(String(buffer: pong1.data) == #"{"type":"pong"}"#)
        try h.channel.writeInbound(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "abc")))
        let pong = try #require(try h.channel.readOutbound(as: WebSocketFrame.self))
        #expect(pong.opcode == .pong && String(buffer: pong.data) == "abc")
        _ = try h.channel.finish()
        #expect(h.registry.socketCount == 0)
    }

    @Test func malformedTextGetsAnErrorFrameAndTheSocketStaysOpen() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        try h.channel.writeInbound(Self.textFrame("{nope"))
        let error = try #require(try h.channel.readOutbound(as: WebSocketFrame.self))
        #expect(String(buffer: error.data).contains(#""type":"error""#))
        #expect(h.channel.isActive)
        _ = try h.channel.finish()
    }

    @Test func binaryFramesAreClosedWith1003() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        try h.channel.writeInbound(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: [1, 2])))
        #expect(Self.closeCode(try h.channel.readOutbound(as: WebSocketFrame.self)) == 1003)
        _ = try? h.channel.finish()
    }

    @Test func typingIsPublishedAndRateLimited() throws {
        let h = try Self.session()
        try h.channel.writeInbound(Self.textFrame(#"{"type":"typing","channel":"general"}"#))
        try h.channel.writeInbound(Self.textFrame(#"{"type":"typing","channel":"general"}"#))
        #expect(h.published.all.count == 1)
        #expect(h.published.all.first?.0 == "general" && h.published.all.first?.1 == "alice")
        _ = try h.channel.finish()
    }

    @Test func deliveriesAreWrittenAsTextFramesSharingOneBuffer() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        let payload = ByteBuffer(string: #"{"type":"event"}"#)
        let missing = h.registry.deliver(TextFrame(payload: Array(payload.readableBytesView), allocator: ByteBufferAllocator()), channel: "c", seq: 1, toSlots: [0, 5])
        #expect(missing == 1)
        h.channel.embeddedEventLoop.run()
        let frame = try #require(try h.channel.readOutbound(as: WebSocketFrame.self))
        #expect(frame.opcode == .text && frame.data == payload)
        _ = try h.channel.finish()
    }

    /// A Deliveries message is planned by the fan-out from placements it learnt earlier: a
    /// slot whose user left must not carry that user's frames to whoever comes next. A released
    /// slot is not given to another user within the reuse delay, and one message resolves all
    /// of its slots under one lock, so its frames reach only the sockets that held their slots.
    /// (With no delay, bob would take alice's slot and get her frame: checked by hand.)
    @Test func aSlotReleasedWithinTheReuseDelayGoesToNoOtherUserAndItsFramesFindNoSocket() throws {
        let metrics = NotifierMetrics()
        let registry = SessionRegistry(maxConnections: 10, slotReuseDelay: .seconds(30), metrics: metrics)
        func open(_ user: String) throws -> EmbeddedChannel {
            let channel = EmbeddedChannel()
            let environment = SessionEnvironment(
                instanceID: "n1", registry: registry, metrics: metrics, heartbeatInterval: .seconds(15),
                closeHandshakeTimeout: .seconds(1), typingPerSecond: 1, publishTyping: { _, _ in }, replayer: nil, logger: Logger(label: "test")
            )
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try channel.pipeline.syncOperations.addHandler(WebSocketSession(userID: user, eventLoop: channel.eventLoop, environment: environment))
            _ = try Self.readFrames(channel)
            return channel
        }
        let alice = try open("alice")
        let aliceSlot = try #require(registry.registrations().first { $0.userID == "alice" }?.slot)
        _ = try alice.finish()
        let bob = try open("bob")
        let bobSlot = try #require(registry.registrations().first { $0.userID == "bob" }?.slot)
        #expect(bobSlot != aliceSlot, "alice's slot is not reused within the delay")
        let frame = { (text: String) in TextFrame(payload: Array(text.utf8), allocator: ByteBufferAllocator()) }
        // One message: a frame planned for alice's old slot, then one for bob's.
        let missing = registry.deliver([
            .init(frame: frame("for-alice"), channel: "c", seq: 1, slots: [aliceSlot]),
            .init(frame: frame("for-bob"), channel: "c", seq: 2, slots: [bobSlot]),
        ])
        #expect(missing == 1)
        bob.embeddedEventLoop.run()
        let received = try Self.readFrames(bob).map { String(buffer: $0.data) }
        #expect(received == ["for-bob"])
        _ = try bob.finish()
    }

    @Test func encodedTextFramesHaveTheWireLayoutOfEveryLengthClass() {
        let allocator = ByteBufferAllocator()
        for (count, header) in [(0, [0x81, 0x00]), (125, [0x81, 125]), (126, [0x81, 126, 0x00, 126]), (65_535, [0x81, 126, 0xFF, 0xFF]), (65_536, [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0])] as [(Int, [UInt8])] {
            let frame = TextFrame(payload: Array(repeating: 0x61, count: count), allocator: allocator)
            #expect(Array(frame.wire.readableBytesView.prefix(header.count)) == header, "\(count)")
            #expect(frame.payloadBytes == count && frame.wire.readableBytes == header.count + count)
            #expect(frame.payload == ByteBuffer(bytes: Array(repeating: 0x61, count: count)))
        }
    }

    /// With the WebSocket encoder in the pipeline, a delivery's encoded bytes go out as they
    /// are, in order with the frames the encoder writes (the hello before them).
    @Test func encodedFramesGoOutUnderTheEncoderInOrderWithItsFrames() throws {
        let channel = EmbeddedChannel()
        let metrics = NotifierMetrics()
        let registry = SessionRegistry(maxConnections: 10, slotReuseDelay: .zero, metrics: metrics)
        let environment = SessionEnvironment(
            instanceID: "n1", registry: registry, metrics: metrics, heartbeatInterval: .seconds(15),
            closeHandshakeTimeout: .seconds(1), typingPerSecond: 1, publishTyping: { _, _ in }, replayer: nil, logger: Logger(label: "test")
        )
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
        try channel.pipeline.syncOperations.addHandler(WebSocketSession(userID: "alice", eventLoop: channel.eventLoop, environment: environment))
        let frame = TextFrame(payload: Array(#"{"type":"event"}"#.utf8), allocator: ByteBufferAllocator())
        registry.deliver(frame, channel: "c", seq: 1, toSlots: [0])
        channel.embeddedEventLoop.run()
        var wire = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&part) }
        let bytes = Array(wire.readableBytesView)
        // The hello (through the encoder: 0x81, its length, its JSON), then the delivery's bytes.
        let delivery = Array(frame.wire.readableBytesView)
        #expect(bytes.first == 0x81 && bytes.count > delivery.count + 2)
        let helloBytes = 2 + Int(bytes[1])
        #expect(String(decoding: bytes[2..<helloBytes], as: UTF8.self).hasPrefix(#"{"type":"hello""#))
        #expect(Array(bytes[helloBytes...]) == delivery)
        _ = try channel.finish()
    }

    @Test func resumeHoldsLiveFramesBackUntilTheReplayAndDropsDuplicates() throws {
        let (h, replayer) = try Self.sessionWithHeldReplayer()
        try h.channel.writeInbound(Self.textFrame(#"{"type":"resume","channel":"general","after_seq":2}"#))
        let request = try #require(replayer.pending.first)
        #expect(request.channel == "general" && request.after == 2)
        // Live frames during the replay: general is held, other channels and typing pass.
        h.registry.deliver(TextFrame(payload: Array("live-4".utf8), allocator: ByteBufferAllocator()), channel: "general", seq: 4, toSlots: [0])
        h.registry.deliver(TextFrame(payload: Array("live-6".utf8), allocator: ByteBufferAllocator()), channel: "general", seq: 6, toSlots: [0])
        h.registry.deliver(TextFrame(payload: Array("other-9".utf8), allocator: ByteBufferAllocator()), channel: "random", seq: 9, toSlots: [0])
        h.registry.deliver(TextFrame(payload: Array("typing".utf8), allocator: ByteBufferAllocator()), channel: "general", seq: 0, toSlots: [0])
        h.channel.embeddedEventLoop.run()
        #expect(try Self.readFrames(h.channel).map { String(buffer: $0.data) } == ["other-9", "typing"])
        // The first pass carried 3..5 and is written at once; live frames stay held.
        let replayed: [(seq: UInt64, frame: [UInt8])] = [(3, Array("r3".utf8)), (4, Array("r4".utf8)), (5, Array("r5".utf8))]
        request.promise.succeed(.replayed(frames: replayed, lastSeq: 5, complete: true))
        h.channel.embeddedEventLoop.run()
        #expect(try Self.readFrames(h.channel).map { String(buffer: $0.data) } == ["r3", "r4", "r5"])
        // Live frames have arrived, so the fan-out routes here: the catch-up pass starts at
        // once after 5 and finds 6 (live 4 and 6 are duplicates of the replay).
        #expect(replayer.pending.count == 2)
        let catchUp = replayer.pending[1]
        #expect(catchUp.channel == "general" && catchUp.after == 5)
        catchUp.promise.succeed(.replayed(frames: [(UInt64(6), Array("r6".utf8))], lastSeq: 6, complete: true))
        h.channel.embeddedEventLoop.run()
        let texts = try Self.readFrames(h.channel).map { String(buffer: $0.data) }
        #expect(texts == ["r6", #"{"type":"resumed","channel":"general","seq":6,"replayed":4,"complete":true,"epoch":"ep7"}"#])
        // After the resume, live frames flow directly again.
        h.registry.deliver(TextFrame(payload: Array("live-7".utf8), allocator: ByteBufferAllocator()), channel: "general", seq: 7, toSlots: [0])
        h.channel.embeddedEventLoop.run()
        #expect(try Self.readFrames(h.channel).map { String(buffer: $0.data) } == ["live-7"])
        _ = try h.channel.finish()
    }

    @Test func quietChannelResumeCatchesUpAfterTheSettleTime() throws {
        let (h, replayer) = try Self.sessionWithHeldReplayer()
        try h.channel.writeInbound(Self.textFrame(#"{"type":"resume","channel":"general","after_seq":2}"#))
        replayer.pending[0].promise.succeed(.replayed(frames: [(UInt64(3), Array("r3".utf8))], lastSeq: 3, complete: true))
        h.channel.embeddedEventLoop.run()
        #expect(try Self.readFrames(h.channel).map { String(buffer: $0.data) } == ["r3"])
        // No live frame: the catch-up pass waits for the settle time, not longer.
        h.channel.embeddedEventLoop.advanceTime(by: SessionEnvironment.resumeSettle - .milliseconds(100))
        #expect(replayer.pending.count == 1)
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(replayer.pending.count == 2 && replayer.pending[1].after == 3)
        // What was published meanwhile (but routed elsewhere) comes from the stream.
        replayer.pending[1].promise.succeed(.replayed(frames: [(UInt64(8), Array("r8".utf8))], lastSeq: 8, complete: true))
        h.channel.embeddedEventLoop.run()
        #expect(try Self.readFrames(h.channel).map { String(buffer: $0.data) } == ["r8", #"{"type":"resumed","channel":"general","seq":8,"replayed":2,"complete":true,"epoch":"ep7"}"#])
        _ = try h.channel.finish()
    }

    @Test func refusedResumeSendsAnErrorAndReleasesHeldFrames() throws {
        let (h, replayer) = try Self.sessionWithHeldReplayer()
        try h.channel.writeInbound(Self.textFrame(#"{"type":"resume","channel":"secret","after_seq":0}"#))
        try h.channel.writeInbound(Self.textFrame(#"{"type":"resume","channel":"secret","after_seq":0}"#))
        #expect(try Self.readFrames(h.channel).map { String(buffer: $0.data) }.first?.contains(#""code":"already_resuming","message":"channel 'secret' is already being resumed","channel":"secret""#) == true)
        h.registry.deliver(TextFrame(payload: Array("live-1".utf8), allocator: ByteBufferAllocator()), channel: "secret", seq: 1, toSlots: [0])
        h.channel.embeddedEventLoop.run()
        try #require(replayer.pending.first).promise.succeed(.refused(code: "not_member", message: "no"))
        h.channel.embeddedEventLoop.run()
        let texts = try Self.readFrames(h.channel).map { String(buffer: $0.data) }
        #expect(texts.count == 2)
        // The refusal names the channel, so that the client stops healing it (and retries one refused for now).
        #expect(texts.first == #"{"type":"error","code":"not_member","message":"no","channel":"secret"}"#)
        #expect(texts.last == "live-1")
        _ = try h.channel.finish()
    }

    @Test func resumeWithoutJetStreamIsAnError() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        try h.channel.writeInbound(Self.textFrame(#"{"type":"resume","channel":"general","after_seq":1}"#))
        #expect(try Self.readFrames(h.channel).first.map { String(buffer: $0.data) }?.contains("unavailable") == true)
        _ = try h.channel.finish()
    }

    @Test func unwritableSocketIsClosedWith4008AndGetsNoMoreFrames() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        let close = try #require(try h.channel.readOutbound(as: WebSocketFrame.self))
        #expect(Self.closeCode(close) == 4008)
        h.registry.deliver(TextFrame(payload: Array("x".utf8), allocator: ByteBufferAllocator()), channel: "c", seq: 2, toSlots: [0])
        h.channel.embeddedEventLoop.run()
        #expect(try h.channel.readOutbound(as: WebSocketFrame.self) == nil)
        // No close reply from the peer: the connection is closed after the handshake timeout.
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!h.channel.isActive)
        #expect(h.registry.socketCount == 0)
    }

    @Test func drainSendsReconnectAndPeerCloseEndsTheConnection() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        h.session.closeForDrain()
        #expect(Self.closeCode(try h.channel.readOutbound(as: WebSocketFrame.self)) == 4000)
        try h.channel.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer(bytes: [0x0F, 0xA0])))
        #expect(!h.channel.isActive)
    }

    @Test func peerCloseIsEchoedWithItsCode() throws {
        let h = try Self.session()
        _ = try Self.readFrames(h.channel)
        try h.channel.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer(bytes: [0x03, 0xE8])))
        #expect(Self.closeCode(try h.channel.readOutbound(as: WebSocketFrame.self)) == 1000)
        #expect(!h.channel.isActive)
    }

    @Test func silentSocketGetsPingsThenCloses4001() throws {
        let h = try Self.session(heartbeat: .seconds(1))
        _ = try Self.readFrames(h.channel)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try h.channel.readOutbound(as: WebSocketFrame.self)?.opcode == .ping)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try h.channel.readOutbound(as: WebSocketFrame.self)?.opcode == .ping)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(Self.closeCode(try h.channel.readOutbound(as: WebSocketFrame.self)) == 4001)
        _ = try? h.channel.finish()
    }

    // MARK: InboundRateLimitHandler

    @Test func rateLimiterPassesTheBurstThenCloses1008() throws {
        let channel = EmbeddedChannel()
        var tripped = 0
        try channel.pipeline.syncOperations.addHandler(InboundRateLimitHandler(messagesPerSecond: 1, burst: 3) { tripped += 1 })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        for _ in 0..<5 { try channel.writeInbound(Self.textFrame("x")) }
        var passed = 0
        while try channel.readInbound(as: WebSocketFrame.self) != nil { passed += 1 }
        #expect(passed == 3)
        #expect(tripped == 1)
        #expect(Self.closeCode(try channel.readOutbound(as: WebSocketFrame.self)) == 1008)
        #expect(!channel.isActive)
    }

    // MARK: HTTPRequestHandler

    /// Serves `/echo` (its async answer is covered against the real executable, in
    /// DemoPageTests: an embedded loop cannot take a completion from another thread).
    struct EchoRoutes: NotifierRoutes {
        var maxBodyBytes: Int { 8 }
        func serves(path: String) -> Bool { path == "/echo" }
        func respond(to request: RouteRequest) async -> HTTPAnswer {
            HTTPAnswer(status: .ok, body: request.body)
        }
    }

    private static func http(
        path: String, method: HTTPMethod = .GET, body: String? = nil, refusal: UpgradeRefusal? = nil, ready: Bool = true
    ) throws -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: String) {
        let channel = EmbeddedChannel()
        let box = NIOLoopBoundBox<UpgradeRefusal?>(refusal, eventLoop: channel.eventLoop)
        let endpoints = OperationsEndpoints(readiness: { ready }, readinessNote: { "presence ok" }, metrics: { Array("metric 1\n".utf8) })
        try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(endpoints: endpoints, routes: EchoRoutes(), refusal: box))
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path)))
        if let body { try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: body))) }
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self),
              case .body(.byteBuffer(let body))? = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            throw HTTPTestError.noResponse
        }
        return (head.status, head.headers, String(buffer: body))
    }

    enum HTTPTestError: Error { case noResponse }

    @Test func opsEndpointsAnswer() throws {
        #expect(try Self.http(path: "/healthz").status == .ok)
        #expect(try Self.http(path: "/readyz").status == .ok)
        #expect(try Self.http(path: "/readyz", ready: false).status == .serviceUnavailable)
        #expect(try Self.http(path: "/metrics").body == "metric 1\n")
        #expect(try Self.http(path: "/nope").status == .notFound)
        #expect(try Self.http(path: "/readyz").body == "ready; presence ok\n")
        #expect(try Self.http(path: "/metrics", method: .POST).status == .methodNotAllowed)
    }

    @Test func executableRoutesSitBesideTheOperationsEndpoints() throws {
        #expect(try Self.http(path: "/echo?x=1", method: .POST, body: "longer than eight").status == .payloadTooLarge)
        #expect(try Self.http(path: "/demo/send", method: .POST, body: "{}").status == .notFound)
    }

    @Test func connectionWithoutACompleteRequestIsClosedAfterTheTimeout() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let box = NIOLoopBoundBox<UpgradeRefusal?>(nil, eventLoop: channel.eventLoop)
        let endpoints = OperationsEndpoints(readiness: { true }, metrics: nil)
        try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(endpoints: endpoints, refusal: box, requestTimeout: .seconds(10)))
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/healthz")))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func wsRefusalsCarryTheirStatusAndReason() throws {
        let unauthorized = try Self.http(path: "/ws?token=x", refusal: .unauthorized(.expired))
        #expect(unauthorized.status == .unauthorized)
        #expect(unauthorized.headers.first(name: ClientProtocol.authErrorHeader) == "expired")
        #expect(unauthorized.body.hasPrefix("expired: "))
        #expect(try Self.http(path: "/ws", refusal: .overCapacity).status == .serviceUnavailable)
        #expect(try Self.http(path: "/ws", refusal: .draining).status == .serviceUnavailable)
        #expect(try Self.http(path: "/ws").status == .upgradeRequired)
    }
}

