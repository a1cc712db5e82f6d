import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A simulated notifier of the baseline designs: one TCP connection speaking the NATS text
/// protocol, holding many subscriptions (one per user, or one per channel), read by one
/// thread. nats.c gives every async subscription its own delivery thread, which would mean
/// thousands of threads here; the raw protocol keeps the subscriber cheap so that what is
/// measured is the server's work for the design, not the bench's threads.
///
/// A `MSG`'s subscription id names its receiver through a plain array.
final class EndToEndRawSubscriber: @unchecked Sendable {
    typealias Handler = @Sendable (_ receiver: Int, _ payload: UnsafeRawBufferPointer, _ now: UInt64) -> Void

    let name: String
    private let fd: Int32
    private let writeLock = NSLock()
    private let pongs = Atomic<Int>(0)
    private let finished = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    let messages = Atomic<Int>(0)
    private var thread: Thread?
    /// Written once by `subscribe` before the reader starts; read only by the reader.
    private var receiverOfSid: [Int] = [-1]

    init(port: UInt16, name: String) throws {
        self.name = name
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw EndToEndError.setup("socket() failed: errno \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            throw EndToEndError.setup("connect to nats-server failed: errno \(errno)")
        }
        var size: Int32 = 8 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        try send(#"CONNECT {"verbose":false,"pedantic":false,"name":"\#(name)","protocol":1,"headers":false}"# + "\r\n")
    }

    /// Starts the reader; `handler` runs on its thread for every message.
    private func start(handler: @escaping Handler) {
        let thread = Thread { [self] in
            read(handler: handler)
            finished.store(true, ordering: .relaxed)
        }
        thread.name = "bench-\(name)"
        self.thread = thread
        thread.start()
    }

    /// Subscribes every subject (sid = its position + 1; the handler is told `receiver`), then
    /// waits for the server's PONG so every subscription is in place when this returns. Call
    /// once: it starts the reader, and `handler` runs on the reader's thread for every message.
    func subscribe(_ subjects: [(subject: String, receiver: Int)], timeout: Duration = .seconds(30), handler: @escaping Handler) throws {
        receiverOfSid = [-1] + subjects.map(\.receiver)
        start(handler: handler)
        var chunk = ""
        for (index, (subject, _)) in subjects.enumerated() {
            chunk += "SUB \(subject) \(index + 1)\r\n"
            if chunk.utf8.count > 60_000 {
                try send(chunk)
                chunk = ""
            }
        }
        let before = pongs.load(ordering: .relaxed)
        try send(chunk + "PING\r\n")
        let deadline = ContinuousClock.now + timeout
        while pongs.load(ordering: .relaxed) == before {
            guard ContinuousClock.now < deadline else { throw EndToEndError.setup("\(name): no PONG after subscribing within \(timeout)") }
            usleep(2_000)
        }
    }

    private func send(_ text: String) throws {
        writeLock.lock(); defer { writeLock.unlock() }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw EndToEndError.setup("\(name): send failed: errno \(errno)") }
            offset += n
        }
    }

    /// Parses `MSG <subject> <sid> [reply] <bytes>\r\n<payload>\r\n`, answers `PING`, counts
    /// `PONG`, ignores `INFO`/`+OK`, reports `-ERR`.
    private func read(handler: Handler) {
        let capacity = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        var start = 0, end = 0
        while !stopping.load(ordering: .relaxed) {
            if start > 0 && (start == end || end > capacity / 2) {
                if end > start { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: end - start) }
                end -= start
                start = 0
            }
            let n = recv(fd, buffer.baseAddress! + end, capacity - end, 0)
            if n <= 0 { break }
            end += n
            let now = pipelineNowNs()
            while start < end {
                guard let lineEnd = Self.crlf(buffer, from: start, to: end) else { break }
                let line = UnsafeRawBufferPointer(rebasing: buffer[start..<lineEnd])
                if line.starts(with: Self.msg) {
                    let fields = line.split(separator: UInt8(ascii: " "))
                    guard fields.count >= 4, let sid = EndToEndParse.number(fields[2]), let size = EndToEndParse.number(fields[fields.count - 1]).map(Int.init) else {
                        FileHandle.standardError.write(Data("\(name): bad MSG line\n".utf8))
                        return
                    }
                    let payloadStart = lineEnd + 2
                    guard payloadStart + size + 2 <= end else { break }
                    messages.add(1, ordering: .relaxed)
                    handler(Int(sid) < receiverOfSid.count ? receiverOfSid[Int(sid)] : -1, UnsafeRawBufferPointer(rebasing: buffer[payloadStart..<(payloadStart + size)]), now)
                    start = payloadStart + size + 2
                    continue
                }
                if line.starts(with: Self.ping) {
                    try? send("PONG\r\n")
                } else if line.starts(with: Self.pong) {
                    pongs.add(1, ordering: .relaxed)
                } else if line.starts(with: Self.err) {
                    FileHandle.standardError.write(Data("\(name): server said \(String(decoding: line, as: UTF8.self))\n".utf8))
                }
                start = lineEnd + 2
            }
        }
    }

    private static let msg = Array("MSG ".utf8)
    private static let ping = Array("PING".utf8)
    private static let pong = Array("PONG".utf8)
    private static let err = Array("-ERR".utf8)

    private static func crlf(_ buffer: UnsafeMutableRawBufferPointer, from: Int, to: Int) -> Int? {
        var index = from
        while index + 1 < to {
            if buffer[index] == 0x0D && buffer[index + 1] == 0x0A { return index }
            index += 1
        }
        return nil
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        let deadline = ContinuousClock.now + .seconds(5)
        while thread != nil && !finished.load(ordering: .relaxed) && ContinuousClock.now < deadline { usleep(5_000) }
        close(fd)
    }
}
