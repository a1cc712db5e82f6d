import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 client over a loopback socket, for probing /readyz and /metrics of the
/// processes a test or the bench starts, and posting to them (no client library between it
/// and the server).
public enum HTTPProbe {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    public static func get(port: UInt16, path: String, headers: [String: String] = [:], timeout: Duration = .seconds(2)) throws -> Response {
        try request("GET", port: port, path: path, headers: headers, timeout: timeout)
    }

    /// One HTTP/1.1 request (`Connection: close`), with `body` and its `Content-Length` when given.
    public static func request(_ method: String, port: UInt16, path: String, headers: [String: String] = [:], body: String? = nil,
                               timeout: Duration = .seconds(2)) throws -> Response {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError.socket("socket() failed") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { throw FixtureError.socket("connect to 127.0.0.1:\(port) failed") }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { request += "\r\n" }
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server may answer (413, say) and close before reading it all
            sent += n
        }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n") else { throw FixtureError.socket("no HTTP response to \(method) 127.0.0.1:\(port)\(path)") }
        let lines = text[..<headerEnd.lowerBound].split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw FixtureError.socket("bad status line from \(path)") }
        var parsed: [String: String] = [:]
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        let content = String(text[headerEnd.upperBound...])
        return Response(status: status, headers: parsed, body: parsed["transfer-encoding"]?.lowercased() == "chunked" ? dechunk(content) : content)
    }

    /// The body of a 200 answer to `GET path`, or nil (no answer, another status).
    public static func body(port: UInt16, path: String, timeout: Duration = .seconds(5)) -> String? {
        guard let response = try? get(port: port, path: path, timeout: timeout), response.status == 200 else { return nil }
        return response.body
    }

    private static func dechunk(_ body: String) -> String {
        var rest = Substring(body)
        var out = ""
        while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound].trimmingCharacters(in: .whitespaces), radix: 16), size > 0 {
            let start = lineEnd.upperBound
            let utf8 = rest.utf8
            guard let end = utf8.index(start, offsetBy: size, limitedBy: utf8.endIndex) else { break }
            out += String(rest[start..<end])
            rest = rest[end...].dropFirst(2)
        }
        return out
    }

    /// Polls `path` until it answers 200 or `timeout` passes; true when it did.
    public static func waitFor200(port: UInt16, path: String, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let response = try? get(port: port, path: path), response.status == 200 { return true }
            usleep(50_000)
        }
        return false
    }
}

/// The repository's root (for `streams/`), found from this source file's location.
public enum RepositoryPaths {
    public static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    public static var streams: String { root.appendingPathComponent("streams").path }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns the last value.
@discardableResult
public func eventually(timeout: Duration, _ condition: () throws -> Bool) -> Bool {
    // A condition that throws (a request that timed out, say) counts as not yet true.
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? condition()) == true { return true }
        usleep(20_000)
    }
    return (try? condition()) == true
}
