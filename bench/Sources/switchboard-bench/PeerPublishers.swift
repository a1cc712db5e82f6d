import CPeerClient
import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardProto
#if canImport(Glibc)
import Glibc
#endif

/// One event the pacer hands to a system's publisher.
struct PeerEvent {
    var point: UInt32
    /// Index of the event within its point (0, 1, …), unique per point.
    var index: Int
    var channel: Int
    var number: Int
    var sentNs: UInt64
}

/// How a system takes events from upstream: called from one thread, in order.
protocol PeerPublisher: AnyObject {
    func publish(_ events: [PeerEvent], workload: PeerWorkload) throws
    /// Waits until every publish so far was answered; returns how many failed since the last call.
    func finish(timeout: Duration) throws -> Int
}

/// nchan's publisher side: HTTP POSTs to `/pub/<channel>` on one keep-alive connection, a
/// pacer tick's events pipelined in one write, responses read whenever the socket is readable
/// (so nginx never blocks on us).
final class NchanHTTPPublisher: PeerPublisher {
    private let fd: Int32
    private let port: UInt16
    private let textLength: Int
    private var inbox: [UInt8] = []
    private var sent = 0
    private var answered = 0
    private var failed = 0

    init(port: UInt16, textLength: Int) throws {
        self.port = port
        self.textLength = textLength
        fd = pc_connect_loopback(port, 0)
        guard fd >= 0 else { throw PeerBenchError.setup("publisher connect to nginx 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    func publish(_ events: [PeerEvent], workload: PeerWorkload) throws {
        var requests: [UInt8] = []
        requests.reserveCapacity(events.count * (textLength + 400))
        for event in events {
            let channelID = workload.channelID(event.channel)
            let text = PeerPayload.text(point: event.point, channel: event.channel, number: event.number, sentNs: event.sentNs, length: textLength)
            let body = PeerPayload.nchanFrame(channelID: channelID, seq: event.index + 1, eventID: "p\(event.point)-\(event.index)",
                                              createdAtMs: Int64(Date().timeIntervalSince1970 * 1000), text: text)
            let head = "POST /pub/\(channelID) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
            requests.append(contentsOf: head.utf8)
            requests.append(contentsOf: body.utf8)
        }
        sent += events.count
        var offset = 0
        while offset < requests.count {
            let written = requests.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written > 0 {
                offset += written
            } else if written < 0 && errno != EAGAIN && errno != EINTR {
                throw PeerBenchError.publish("POST to nchan: \(String(cString: strerror(errno)))")
            } else {
                try waitAndRead(events: Int16(POLLIN | POLLOUT), timeoutMs: 100)
            }
        }
        try readResponses()
    }

    func finish(timeout: Duration) throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while answered < sent {
            guard ContinuousClock.now < deadline else { throw PeerBenchError.publish("nchan answered \(answered) of \(sent) POSTs within \(timeout)") }
            try waitAndRead(events: Int16(POLLIN), timeoutMs: 50)
        }
        defer { failed = 0 }
        return failed
    }

    private func waitAndRead(events: Int16, timeoutMs: Int32) throws {
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        _ = poll(&descriptor, 1, timeoutMs)
        if descriptor.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { try readResponses() }
    }

    /// Reads what is there and counts every complete response (status line, headers,
    /// Content-Length body).
    private func readResponses() throws {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if got == 0 { throw PeerBenchError.publish("nginx closed the publisher connection after \(answered) responses") }
            if got < 0 {
                if errno == EAGAIN || errno == EINTR { break }
                throw PeerBenchError.publish("reading nchan responses: \(String(cString: strerror(errno)))")
            }
            inbox.append(contentsOf: buffer[0..<got])
        }
        var start = 0
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while let headerEnd = Self.find(separator, in: inbox, from: start) {
            let head = String(decoding: inbox[start..<headerEnd], as: UTF8.self)
            let status = head.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let end = headerEnd + 4 + length
            guard end <= inbox.count else { break }
            answered += 1
            if !(200..<300).contains(status) { failed += 1 }
            start = end
        }
        inbox.removeFirst(start)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard haystack.count >= needle.count + from else { return nil }
        var index = from
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0] && haystack[index..<index + needle.count].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}

/// Switchboard's upstream: an async JetStream publish per event of a `ChatEvent`
/// (`MessageCreated` with the marker text) on `chat.events.<p>.<channel>`, with `Nats-Msg-Id`.
final class JetStreamPeerPublisher: PeerPublisher {
    private let jetStream: JetStream
    private let partitionCount: Int
    private let textLength: Int
    private let runID = UUID().uuidString.prefix(8)

    init(jetStream: JetStream, partitionCount: Int, textLength: Int) {
        self.jetStream = jetStream
        self.partitionCount = partitionCount
        self.textLength = textLength
    }

    func publish(_ events: [PeerEvent], workload: PeerWorkload) throws {
        for event in events {
            let channelID = workload.channelID(event.channel)
            let text = PeerPayload.text(point: event.point, channel: event.channel, number: event.number, sentNs: event.sentNs, length: textLength)
            let id = "p\(event.point)-\(event.index)"
            let chat = ChatEvent(eventID: id, channelID: channelID, senderID: "peer-publisher",
                                 createdAtMs: Int64(Date().timeIntervalSince1970 * 1000), body: .messageCreated(messageID: id, text: text))
            try jetStream.publishAsync(Subjects.event(channel: channelID, partitionCount: partitionCount), payload: chat.encoded(), msgID: "peer-\(runID)-\(id)")
        }
    }

    func finish(timeout: Duration) throws -> Int {
        do {
            try jetStream.publishAsyncComplete(timeout: timeout)
            return 0
        } catch {
            throw PeerBenchError.publish("JetStream publishes not all acknowledged: \(error)")
        }
    }
}
