import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking WebSocket client over a plain loopback socket, for driving the notifier the
/// way misbehaving clients would: it can stop reading (slow consumer), send frames larger
/// than allowed, flood, or stay silent. Frames are masked as RFC 6455 requires of clients.
/// Not thread-safe: one test thread uses it.
public final class WebSocketTestClient: @unchecked Sendable {
    public struct Frame: Equatable {
        public var opcode: UInt8
        public var payload: [UInt8]
        public var text: String { String(decoding: payload, as: UTF8.self) }
        /// For a close frame: its status code.
        public var closeCode: UInt16? {
            guard opcode == 0x8, payload.count >= 2 else { return nil }
            return UInt16(payload[0]) << 8 | UInt16(payload[1])
        }
        public var closeReason: String { opcode == 0x8 && payload.count > 2 ? String(decoding: payload[2...], as: UTF8.self) : "" }
    }

    public enum Failure: Error, CustomStringConvertible {
        case refused(status: Int, headers: [String: String], body: String)
        case io(String)
        public var description: String {
            switch self {
            case .refused(let status, _, let body): "upgrade refused: HTTP \(status) \(body)"
            case .io(let what): what
            }
        }
    }

    private let fd: Int32
    private var buffer: [UInt8] = []
    public private(set) var isClosed = false

    /// Connects and upgrades `path`; throws `.refused` with the HTTP answer when not upgraded.
    /// `receiveBuffer` shrinks SO_RCVBUF (before connecting) to make a slow reader slower.
    public init(port: Int, path: String = "/ws", headers: [String: String] = [:], receiveBuffer: Int? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.io("socket() failed") }
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            throw Failure.io("connect to 127.0.0.1:\(port) failed")
        }
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        do {
            try sendAll(Array(request.utf8))
            let (status, responseHeaders, body) = try readHTTPResponse(timeout: .seconds(5))
            guard status == 101 else { throw Failure.refused(status: status, headers: responseHeaders, body: body) }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { if !isClosed { close(fd) } }

    // MARK: Sending

    public func send(text: String) throws { try send(opcode: 0x1, payload: Array(text.utf8)) }

    public func send(opcode: UInt8, payload: [UInt8], fin: Bool = true) throws {
        try sendAll(Self.frame(opcode: opcode, payload: payload, fin: fin))
    }

    /// Sends a close frame with `code`.
    public func sendClose(code: UInt16 = 1000) throws {
        try send(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)])
    }

    public static func frame(opcode: UInt8, payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count < 126 {
            bytes.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes.append(0x80 | 126)
            bytes += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        let mask: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        bytes += mask
        for (index, byte) in payload.enumerated() { bytes.append(byte ^ mask[index % 4]) }
        return bytes
    }

    public func sendAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw Failure.io("send failed: errno \(errno)") }
            offset += n
        }
    }

    // MARK: Receiving

    /// The next frame, or nil when none arrives within `timeout` (or the connection ended).
    public func receive(timeout: Duration = .seconds(5)) throws -> Frame? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let frame = parseFrame() { return frame }
            if isClosed { return nil }
            guard try fill(until: deadline) else { return nil }
        }
    }

    /// The next text frame, skipping pings; nil on timeout, close or end of stream.
    public func receiveText(timeout: Duration = .seconds(5)) throws -> String? {
        let deadline = ContinuousClock.now + timeout
        while let frame = try receive(timeout: deadline - ContinuousClock.now) {
            switch frame.opcode {
            case 0x1: return frame.text
            case 0x8: return nil
            default: continue
            }
        }
        return nil
    }

    /// Reads until a close frame arrives; returns it (nil on timeout or a bare TCP close).
    public func receiveClose(timeout: Duration = .seconds(5)) throws -> Frame? {
        let deadline = ContinuousClock.now + timeout
        while let frame = try receive(timeout: deadline - ContinuousClock.now) {
            if frame.opcode == 0x8 { return frame }
        }
        return nil
    }

    /// Reads and discards everything until a close frame; counts the text frames seen.
    public func drainUntilClose(timeout: Duration) throws -> (texts: Int, close: Frame?) {
        let deadline = ContinuousClock.now + timeout
        var texts = 0
        while let frame = try receive(timeout: deadline - ContinuousClock.now) {
            if frame.opcode == 0x1 { texts += 1 }
            if frame.opcode == 0x8 { return (texts, frame) }
        }
        return (texts, nil)
    }

    public func closeSocket() {
        guard !isClosed else { return }
        isClosed = true
        close(fd)
    }

    private func parseFrame() -> Frame? {
        guard buffer.count >= 2 else { return nil }
        let opcode = buffer[0] & 0x0F
        var length = Int(buffer[1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard buffer.count >= 4 else { return nil }
            length = Int(buffer[2]) << 8 | Int(buffer[3])
            offset = 4
        } else if length == 127 {
            guard buffer.count >= 10 else { return nil }
            length = buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard buffer.count >= offset + length else { return nil }
        let payload = Array(buffer[offset..<offset + length])
        buffer.removeFirst(offset + length)
        return Frame(opcode: opcode, payload: payload)
    }

    /// Reads what is available; false on timeout or end of stream.
    private func fill(until deadline: ContinuousClock.Instant) throws -> Bool {
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { return false }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
        let ready = poll(&pfd, 1, ms)
        if ready <= 0 { return false }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 {
            isClosed = true
            close(fd)
            return false
        }
        buffer += chunk[0..<n]
        return true
    }

    private func readHTTPResponse(timeout: Duration) throws -> (Int, [String: String], String) {
        let deadline = ContinuousClock.now + timeout
        let separator: [UInt8] = [13, 10, 13, 10]
        while true {
            if let end = buffer.firstRange(of: separator) {
                let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeFirst(end.upperBound)
                let lines = head.components(separatedBy: "\r\n")
                let status = lines.first.flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
                var headers: [String: String] = [:]
                for line in lines.dropFirst() {
                    if let colon = line.firstIndex(of: ":") {
                        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    }
                }
                var body = ""
                if status != 101, let length = headers["content-length"].flatMap(Int.init) {
                    while buffer.count < length, try fill(until: deadline) {}
                    body = String(decoding: buffer.prefix(length), as: UTF8.self)
                }
                return (status, headers, body)
            }
            guard try fill(until: deadline) else { throw Failure.io("no HTTP response to the upgrade") }
        }
    }
}
