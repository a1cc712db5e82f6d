import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the bench reads from the servers around a phase: nats-server's /varz and /subsz
/// (monitoring port), CPU seconds of a process from /proc/<pid>/stat, and a counter from a
/// Prometheus /metrics page.
enum EndToEndProbes {
    /// The body of `GET path` on 127.0.0.1:`port` (HTTP/1.1, `Connection: close`), or nil.
    static func get(port: UInt16, path: String, timeoutSeconds: Int = 5) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return nil }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            response.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<split.lowerBound]
        let body = String(text[split.upperBound...])
        guard head.lowercased().contains("transfer-encoding: chunked") else { return body }
        return dechunk(body)
    }

    private static func dechunk(_ body: String) -> String {
        var bytes = Substring(body)
        var out = ""
        while let lineEnd = bytes.range(of: "\r\n"), let size = Int(bytes[..<lineEnd.lowerBound].trimmingCharacters(in: .whitespaces), radix: 16), size > 0 {
            let start = lineEnd.upperBound
            let utf8 = bytes.utf8
            guard let end = utf8.index(start, offsetBy: size, limitedBy: utf8.endIndex) else { break }
            out += String(bytes[start..<end])
            bytes = bytes[end...].dropFirst(2)
        }
        return out
    }

    /// nats-server's message and subscription counters.
    struct Varz {
        var inMsgs: Int
        var outMsgs: Int
        var subscriptions: Int
    }

    static func varz(port: UInt16) -> Varz? {
        guard let body = get(port: port, path: "/varz"),
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return Varz(inMsgs: object["in_msgs"] as? Int ?? 0, outMsgs: object["out_msgs"] as? Int ?? 0, subscriptions: object["subscriptions"] as? Int ?? 0)
    }

    /// Subscriptions on the server whose subject starts with `prefix` (from /subsz's list).
    static func subscriptions(port: UInt16, prefix: String) -> Int? {
        guard let body = get(port: port, path: "/subsz?subs=1&limit=1000000", timeoutSeconds: 20),
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let list = object["subscriptions_list"] as? [[String: Any]] else { return nil }
        return list.reduce(0) { $0 + (($1["subject"] as? String)?.hasPrefix(prefix) == true ? 1 : 0) }
    }

    /// User + system CPU seconds of a process so far (this process when nil).
    static func cpuSeconds(pid: Int32? = nil) -> Double {
        let path = pid.map { "/proc/\($0)/stat" } ?? "/proc/self/stat"
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The sum of every sample of `metric` (any labels matching `labelFilter`) on a Prometheus page.
    static func counter(port: UInt16, metric: String, labelFilter: String = "") -> Double? {
        guard let body = get(port: port, path: "/metrics") else { return nil }
        var total = 0.0
        var found = false
        for line in body.split(separator: "\n") where line.hasPrefix(metric) && !line.hasPrefix("#") {
            let name = line.prefix { $0 != " " && $0 != "{" }
            guard name == metric, labelFilter.isEmpty || line.contains(labelFilter),
                  let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            total += value
            found = true
        }
        return found ? total : nil
    }
}
