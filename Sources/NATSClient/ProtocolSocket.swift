import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP connection to nats-server on which Switchboard speaks the client protocol itself
/// (`StreamScan`, `FeedLink`): one growing receive buffer whose frames are parsed where they
/// landed (`ServerFrame`), every call bounded in time. One thread at a time; `shutdown` may
/// come from any.
final class ProtocolSocket {
    static let initialBuffer = 1 << 20
    /// A message larger than nats-server's largest payload (64 MiB) is not one.
    static let maximumBuffer = 72 << 20
    /// Bounds every write.
    static let sendTimeout: Duration = .seconds(2)

    let description: String
    private let fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    /// Bytes received are `buffer[readIndex..<filled]`.
    private var readIndex = 0
    private var filled = 0
    private(set) var lastReceive = ContinuousClock.now

    /// Connects, reads the server's INFO, sends CONNECT, `subscribe` (SUB lines) and a PING,
    /// and returns once the PONG came: the login and the subscriptions are in place.
    static func open(login: PlainLogin, subscribe: [UInt8], timeout: Duration, description: String, purpose: String) throws -> ProtocolSocket {
        let socket = try ProtocolSocket(host: login.host, port: login.port, timeout: timeout, description: description)
        _ = try socket.waitFor(what: "server INFO", timeout: timeout) { frame, bytes in
            guard case .info(let range) = frame else { return false }
            try PlainLogin.checkInfo(bytes[range], purpose: purpose)
            return true
        }
        try socket.send(login.connectLine + subscribe + Array("PING\r\n".utf8))
        // The PONG follows the CONNECT and the SUBs: a refused login or subscription comes as -ERR first.
        _ = try socket.waitFor(what: "PONG", timeout: timeout) { frame, _ in frame == .pong }
        return socket
    }

    private init(host: String, port: UInt16, timeout: Duration, description: String) throws {
        self.description = description
        fd = try ScanSocket.connect(host: host, port: port, timeout: timeout, what: description)
        buffer = .allocate(byteCount: Self.initialBuffer, alignment: 16)
    }

    deinit {
        Glibc.close(fd)
        buffer.deallocate()
    }

    /// Ends the connection; a read in progress on another thread returns or throws.
    func shutdown() {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// What has been received; frame ranges refer to it. Valid until the next `receive`.
    var bytes: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), count: filled)
    }

    /// The next whole frame received and not yet taken, or nil.
    func nextFrame() throws -> ServerFrame? {
        do {
            guard let (frame, end) = try ServerFrame.next(in: bytes, from: readIndex) else { return nil }
            readIndex = end
            return frame
        } catch {
            throw NATSError.malformedResponse(operation: description, reason: "\(error)")
        }
    }

    /// Reads what has arrived, waiting at most `wait` for it; false when nothing came.
    func receive(waiting wait: Duration) throws -> Bool {
        if readIndex > 0 {
            let remaining = filled - readIndex
            if remaining > 0 { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + readIndex, byteCount: remaining) }
            filled = remaining
            readIndex = 0
        }
        if filled == buffer.count {
            guard buffer.count < Self.maximumBuffer else { throw NATSError.malformedResponse(operation: description, reason: "a frame over \(Self.maximumBuffer) bytes") }
            let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count * 2, alignment: 16)
            larger.baseAddress!.copyMemory(from: buffer.baseAddress!, byteCount: filled)
            buffer.deallocate()
            buffer = larger
        }
        guard try ScanSocket.wait(fd, for: Int16(POLLIN), within: wait, what: description) else { return false }
        let count = recv(fd, buffer.baseAddress! + filled, buffer.count - filled, 0)
        if count == 0 { throw NATSError.connectionClosed(operation: "\(description): the server closed the connection") }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { return false }
            throw NATSError.failed(operation: description, status: String(cString: strerror(errno)))
        }
        filled += count
        lastReceive = .now
        return true
    }

    /// Reads frames until `accept` takes one, answering PINGs; an `-ERR` throws.
    func waitFor(what: String, timeout: Duration, _ accept: (ServerFrame, UnsafeBufferPointer<UInt8>) throws -> Bool) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            while let frame = try nextFrame() {
                if case .error(let range) = frame {
                    throw NATSError.failed(operation: "\(description) (waiting for \(what))", status: "server error \(String(decoding: bytes[range], as: UTF8.self))")
                }
                if case .ping = frame { try send(Self.pong) }
                if try accept(frame, bytes) { return true }
            }
            let left = deadline - .now
            guard left > .zero else { throw NATSError.timeout(operation: "\(description): \(what) within \(timeout)") }
            _ = try receive(waiting: left)
        }
    }

    func send(_ bytes: [UInt8]) throws {
        try ScanSocket.send(fd, bytes, within: Self.sendTimeout, what: description)
    }

    static let ping = Array("PING\r\n".utf8)
    static let pong = Array("PONG\r\n".utf8)
}
