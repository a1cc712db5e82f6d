import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The machine's own ceiling for what the notifier does per recipient: one `writev` of a
/// frame (header + payload, as NIO writes it) to one connected loopback TCP socket, from one
/// thread, with nothing else around it (no event loop, no WebSocket, no reader woken: the
/// receiving ends are never read, the frames stay in their receive buffers). The delivery
/// rate is read against this: the notifier cannot write faster than the kernel takes writes.
enum NotifierWriteCeiling {
    struct Result {
        var sockets: Int
        var writes: Int
        var seconds: Double
        var cpuSeconds: Double
        var writesPerSecond: Double { Double(writes) / seconds }
    }

    /// The header of an unmasked final text frame (RFC 6455 §5.2) with `payloadBytes` of payload.
    static func webSocketHeader(payloadBytes: Int) -> [UInt8] {
        if payloadBytes < 126 { return [0x81, UInt8(payloadBytes)] }
        if payloadBytes <= 0xFFFF { return [0x81, 126, UInt8(payloadBytes >> 8), UInt8(payloadBytes & 0xFF)] }
        return [0x81, 127] + (0..<8).reversed().map { UInt8((UInt64(payloadBytes) >> (8 * UInt64($0))) & 0xFF) }
    }

    /// Opens `sockets` loopback TCP connections, then writes `rounds` frames of `frameBytes`
    /// (plus the WebSocket header) to each, round by round, and closes them.
    static func measure(sockets: Int, rounds: Int, frameBytes: Int) throws -> Result {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw PipelineError.setup("socket() failed: errno \(errno)") }
        var fds: [Int32] = []
        defer {
            for fd in fds { close(fd) }
            close(listener)
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) == 0 && getsockname(listener, $0, &len) == 0 }
        } && listen(listener, 4096) == 0
        guard listening else { throw PipelineError.setup("ceiling listener: errno \(errno)") }

        var writers: [Int32] = []
        writers.reserveCapacity(sockets)
        for _ in 0..<sockets {
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard client >= 0 else { throw PipelineError.setup("ceiling: socket() failed: errno \(errno)") }
            fds.append(client)
            let connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else { throw PipelineError.setup("ceiling: connect failed: errno \(errno)") }
            let server = accept(listener, nil, nil)
            guard server >= 0 else { throw PipelineError.setup("ceiling: accept failed: errno \(errno)") }
            fds.append(server)
            var one: Int32 = 1
            setsockopt(server, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            writers.append(server)
        }

        // The same bytes for every socket, as the notifier shares one payload buffer.
        let header = webSocketHeader(payloadBytes: frameBytes)
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: frameBytes)
        let total = header.count + payload.count
        let cpuBefore = Machine.cpuSeconds()
        let started = ContinuousClock.now
        try header.withUnsafeBytes { headerBytes in
            try payload.withUnsafeBytes { payloadBytes in
                var vectors = [
                    iovec(iov_base: UnsafeMutableRawPointer(mutating: headerBytes.baseAddress), iov_len: headerBytes.count),
                    iovec(iov_base: UnsafeMutableRawPointer(mutating: payloadBytes.baseAddress), iov_len: payloadBytes.count),
                ]
                for _ in 0..<rounds {
                    for fd in writers {
                        let written = writev(fd, &vectors, 2)
                        guard written == total else { throw PipelineError.setup("ceiling: writev wrote \(written) of \(total) bytes: errno \(errno)") }
                    }
                }
            }
        }
        let seconds = (ContinuousClock.now - started).seconds
        return Result(sockets: sockets, writes: sockets * rounds, seconds: seconds, cpuSeconds: Machine.cpuSeconds() - cpuBefore)
    }
}
