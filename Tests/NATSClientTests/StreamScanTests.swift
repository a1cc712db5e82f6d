import Foundation
@testable import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

@Suite("StreamScan against a real nats-server")
struct StreamScanTests {
    /// Reads batches of at most `limit` until `count` messages came (or a read found none).
    private func readAll(_ scan: StreamScan, count: Int, limit: Int = 64) throws -> [(sequence: UInt64, subject: String, payload: [UInt8], pending: UInt64)] {
        var read: [(sequence: UInt64, subject: String, payload: [UInt8], pending: UInt64)] = []
        while read.count < count {
            let handed = try scan.read(limit: limit, timeout: .seconds(3)) { message in
                read.append((message.streamSequence, String(decoding: message.subject, as: UTF8.self), Array(message.payload), message.numPending))
            }
            #expect(handed <= limit)
            if handed == 0 { break }
        }
        return read
    }

    private func consumerCount(_ jetStream: JetStream, _ stream: String) throws -> Int {
        let info = try jetStream.apiRequest("STREAM.INFO.\(stream)", payload: [], operation: "stream info")
        guard case .object(let state)? = info["state"] else { return -1 }
        return state["consumer_count"]?.intValue ?? 0
    }

    @Test func lendsTheStreamFromAStartSequenceInOrderWithPendingCountsThenDeletesItsConsumer() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.membership))
            var published: [(sequence: UInt64, subject: String)] = []
            for index in 0..<300 {
                let subject = "chat.membership.\(index % 16).channel.user\(index)"
                // Some messages carry headers (they come as HMSG).
                let ack = try jetStream.publish(subject, payload: bytes("\(index)"), msgID: index % 3 == 0 ? "m\(index)" : nil)
                published.append((ack.sequence, subject))
            }

            let scan = try StreamScan(jetStream: jetStream, stream: StreamNames.membership, startSequence: published[100].sequence)
            #expect(try consumerCount(jetStream, StreamNames.membership) == 1)
            let read = try readAll(scan, count: 200)
            #expect(read.map(\.sequence) == published[100...].map(\.sequence))
            #expect(read.map(\.subject) == published[100...].map(\.subject))
            #expect(read.map { text($0.payload) } == (100..<300).map { "\($0)" })
            #expect(read.map(\.pending) == (0..<200).map { UInt64(199 - $0) })
            #expect(try scan.read(limit: 64, timeout: .milliseconds(100)) { _ in } == 0)

            // What is published while it reads comes next, on the same consumer.
            _ = try jetStream.publish("chat.membership.7.channel.late", payload: bytes("late"))
            let late = try readAll(scan, count: 1)
            #expect(late.map(\.subject) == ["chat.membership.7.channel.late"])
            scan.close()
            #expect(try consumerCount(jetStream, StreamNames.membership) == 0)
            #expect(throws: NATSError.self) { _ = try scan.read(limit: 1, timeout: .milliseconds(100)) { _ in } }

            // From 0: the whole stream.
            let whole = try StreamScan(jetStream: jetStream, stream: StreamNames.membership, startSequence: 0)
            defer { whole.close() }
            #expect(try readAll(whole, count: 301, limit: 1_000).map(\.sequence) == published.map(\.sequence) + [published.last!.sequence + 1])
        }
    }

    /// nats-server stops a flow-controlled consumer once a few MB are unanswered: a replay
    /// larger than that only arrives whole when the scan answers the flow-control requests.
    @Test func answersFlowControlSoThatAReplayOfManyMegabytesArrivesWhole() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: bytes(#"{"name": "SCAN_BULK", "subjects": ["bulk.>"], "storage": "memory"}"#))
            let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 60_000)
            let total = 500  // 30 MB
            for index in 0..<total {
                var payload = chunk
                payload[0] = UInt8(index % 251)
                try jetStream.publishAsync("bulk.\(index % 7)", payload: payload)
            }
            try jetStream.publishAsyncComplete(timeout: .seconds(30))

            let scan = try StreamScan(jetStream: jetStream, stream: "SCAN_BULK", startSequence: 0)
            defer { scan.close() }
            var read: [(UInt64, UInt8, Int)] = []
            while read.count < total {
                let handed = try scan.read(limit: 32, timeout: .seconds(5)) { message in
                    read.append((message.streamSequence, message.payload[0], message.payload.count))
                }
                if handed == 0 { break }
                usleep(2_000)  // a slow reader: the server's buffers fill and flow control matters
            }
            #expect(read.count == total)
            #expect(read.map(\.0) == (1...UInt64(total)).map { $0 })
            #expect(read.map(\.1) == (0..<total).map { UInt8($0 % 251) })
            #expect(read.allSatisfy { $0.2 == chunk.count })
            #expect(scan.flowControlAnswers > 0)
        }
    }

    @Test func authenticatesWithTheConnectionsUserAndPasswordAndRefusesWhatItCannotServe() throws {
        let nats = try NATSServerFixture(extraArguments: ["--user", "fanout", "--pass", "s3cret-pw"])
        defer { nats.stop() }
        let inURL = try NATSConnection(options: .init(url: "nats://fanout:s3cret-pw@127.0.0.1:\(nats.port)", maxReconnects: 0))
        defer { inURL.close() }
        let jetStream = try inURL.jetStream()
        _ = try jetStream.applyStream(configJSON: bytes(#"{"name": "SCAN_AUTH", "subjects": ["auth.>"], "storage": "memory"}"#))
        _ = try jetStream.publish("auth.one", payload: bytes("1"))
        let scan = try StreamScan(jetStream: jetStream, stream: "SCAN_AUTH", startSequence: 1)
        #expect(try readAll(scan, count: 1).map(\.subject) == ["auth.one"])
        scan.close()

        let files = try TemporaryDirectory()
        let passwordFile = files.url.appendingPathComponent("password").path
        try "s3cret-pw\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let fromFile = try NATSConnection(options: .init(url: "nats://127.0.0.1:\(nats.port)", maxReconnects: 0, authentication: .init(user: "fanout", passwordFile: passwordFile)))
        defer { fromFile.close() }
        let second = try StreamScan(jetStream: try fromFile.jetStream(), stream: "SCAN_AUTH", startSequence: 1)
        defer { second.close() }
        #expect(try readAll(second, count: 1).map(\.subject) == ["auth.one"])

        #expect(throws: NATSError.unsupported("stream scan over tls://")) { _ = try ScanEndpoint(url: "tls://127.0.0.1:4222") }
        #expect(throws: NATSError.self) { _ = try ScanEndpoint(url: "nats://127.0.0.1:x") }
    }

    @Test func readsHostPortAndCredentialsOfAURL() throws {
        #expect(try ScanEndpoint(url: "nats://127.0.0.1:4333") == ScanEndpoint(host: "127.0.0.1", port: 4333, user: nil, password: nil))
        #expect(try ScanEndpoint(url: "nats://u:p%40ss@host") == ScanEndpoint(host: "host", port: 4222, user: "u", password: "p@ss"))
        #expect(try ScanEndpoint(url: "nats://tok@[::1]:5000") == ScanEndpoint(host: "::1", port: 5000, user: "tok", password: nil))
        #expect(try ScanEndpoint(url: "localhost:7") == ScanEndpoint(host: "localhost", port: 7, user: nil, password: nil))
    }
}
