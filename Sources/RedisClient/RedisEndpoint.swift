import Foundation

/// Where and how to connect, parsed from `redis://[[user]:password@]host[:port][/db]`.
///
/// `user` and `password` may be percent-encoded. A password without a user authenticates
/// with `AUTH password`, both with `AUTH user password` (Redis 6 ACL).
struct RedisEndpoint: Sendable, Equatable {
    static let defaultPort: UInt16 = 6379

    var host: String
    var port: UInt16
    var user: String?
    var password: String?
    var database: Int

    /// `host:port` for error messages (IPv6 hosts in brackets). Never contains the password.
    var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    init(host: String, port: UInt16 = defaultPort, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    init(parsing url: String) throws(RedisError) {
        guard let separator = url.firstRange(of: "://") else {
            throw .invalidURL("\(Self.redacted(url)) has no scheme; expected redis://host:port")
        }
        let scheme = url[..<separator.lowerBound].lowercased()
        guard scheme == "redis" else {
            throw .invalidURL("scheme \"\(scheme)\" is not supported; expected redis:// (no TLS)")
        }
        var rest = url[separator.upperBound...]
        if let query = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<query] }

        var authority = rest
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        }

        var user: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let credentials = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = try Self.percentDecoded(credentials[..<colon])
                password = try Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                // redis://secret@host: a lone credential is the password (as redis-cli reads it).
                password = try Self.percentDecoded(credentials)
            }
            if user?.isEmpty == true { user = nil }
        }

        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw .invalidURL("unterminated IPv6 address in \(Self.redacted(url))")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidURL("unexpected text after IPv6 address in \(Self.redacted(url))") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .invalidURL("no host in \(Self.redacted(url))") }

        var port = Self.defaultPort
        if let portText {
            guard let value = UInt16(portText), value > 0 else {
                throw .invalidURL("port \"\(portText)\" is not a number in 1...65535")
            }
            port = value
        }

        var database = 0
        if !path.isEmpty {
            guard let value = Int(path), value >= 0 else {
                throw .invalidURL("database \"\(path)\" is not a non-negative number")
            }
            database = value
        }
        self.init(host: String(host), port: port, user: user, password: password, database: database)
    }

    /// The URL with any credentials replaced, safe for error messages and logs.
    static func redacted(_ url: String) -> String {
        guard let separator = url.firstRange(of: "://"),
              let at = url[separator.upperBound...].firstIndex(of: "@") else { return url }
        return url[..<separator.upperBound] + "***" + url[at...]
    }

    private static func percentDecoded(_ text: Substring) throws(RedisError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next(), let low = iterator.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                throw .invalidURL("bad percent-encoding in credentials")
            }
            bytes.append(value)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw .invalidURL("credentials are not UTF-8 after percent-decoding")
        }
        return decoded
    }
}

/// Redis URLs as the services take them.
public enum RedisURL {
    /// `url` with `user` and the password in `passwordFile` (a trailing newline trimmed) put in
    /// as its credentials, percent-encoded: `--redis-user` and `--redis-password-file`, so that
    /// the password is on no command line. Throws naming the flag when the file cannot be read.
    public static func withCredentials(_ url: String, user: String?, passwordFile: String?) throws -> String {
        guard user != nil || passwordFile != nil else { return url }
        guard let passwordFile else { throw RedisError.invalidURL("--redis-user needs --redis-password-file") }
        guard let data = FileManager.default.contents(atPath: passwordFile) else {
            throw RedisError.invalidURL("--redis-password-file '\(passwordFile)' cannot be read")
        }
        var password = String(decoding: data, as: UTF8.self)
        while password.last == "\n" || password.last == "\r" { password.removeLast() }
        guard !password.isEmpty else { throw RedisError.invalidURL("--redis-password-file '\(passwordFile)' is empty") }
        guard let separator = url.firstRange(of: "://") else { throw RedisError.invalidURL("\(RedisEndpoint.redacted(url)) has no scheme; expected redis://host:port") }
        var rest = url[separator.upperBound...]
        if let at = rest.firstIndex(of: "@"), rest[..<at].firstIndex(of: "/") == nil { rest = rest[rest.index(after: at)...] }
        let credentials = (user.map(encode) ?? "") + ":" + encode(password)
        return url[..<separator.upperBound] + credentials + "@" + rest
    }

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}
