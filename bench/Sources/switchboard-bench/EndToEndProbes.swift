import Foundation
import SwitchboardHarness

/// What the bench reads from the servers around a phase: nats-server's /varz and /subsz
/// (monitoring port) and a counter from a Prometheus /metrics page.
enum EndToEndProbes {
    /// nats-server's message and subscription counters.
    struct Varz {
        var inMsgs: Int
        var outMsgs: Int
        var subscriptions: Int
    }

    static func varz(port: UInt16) -> Varz? {
        guard let body = HTTPProbe.body(port: port, path: "/varz"),
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return Varz(inMsgs: object["in_msgs"] as? Int ?? 0, outMsgs: object["out_msgs"] as? Int ?? 0, subscriptions: object["subscriptions"] as? Int ?? 0)
    }

    /// Subscriptions on the server whose subject starts with `prefix` (from /subsz's list).
    static func subscriptions(port: UInt16, prefix: String) -> Int? {
        guard let body = HTTPProbe.body(port: port, path: "/subsz?subs=1&limit=1000000", timeout: .seconds(20)),
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let list = object["subscriptions_list"] as? [[String: Any]] else { return nil }
        return list.reduce(0) { $0 + (($1["subject"] as? String)?.hasPrefix(prefix) == true ? 1 : 0) }
    }

    /// The sum of every sample of `metric` (any labels matching `labelFilter`) on a Prometheus page.
    static func counter(port: UInt16, metric: String, labelFilter: String = "") -> Double? {
        guard let body = HTTPProbe.body(port: port, path: "/metrics") else { return nil }
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
