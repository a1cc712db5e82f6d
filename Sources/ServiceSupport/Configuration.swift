/// A configuration value that cannot be used; the executables print it as one line and exit 1.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// Environment fallbacks for flags (DESIGN: every flag has `SWITCHBOARD_<FLAG>`).
public enum EnvironmentFallback {
    /// The environment variable of `--some-flag`: `SWITCHBOARD_SOME_FLAG`.
    public static func variable(for option: String) -> String {
        "SWITCHBOARD_" + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// `arguments` plus `--option value` for each option absent from the command line whose
    /// environment variable is set. Flags on the command line always win.
    public static func apply(to arguments: [String], options: [String], environment: [String: String]) -> [String] {
        var result = arguments
        for option in options {
            let flag = "--\(option)"
            let present = arguments.contains { $0 == flag || $0.hasPrefix(flag + "=") }
            if !present, let value = environment[variable(for: option)] { result += [flag, value] }
        }
        return result
    }
}

/// `host:port` flags such as `--http 127.0.0.1:9090` or `--listen [::1]:8080`.
public enum HostPort {
    public static func parse(_ text: String, flag: String) throws(ConfigurationError) -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
              let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { throw ConfigurationError("\(flag) '\(text)' is not host:port") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}
