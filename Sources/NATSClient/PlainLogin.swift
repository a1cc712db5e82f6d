import Foundation

/// How to open a NATS connection of Switchboard's own beside a `NATSConnection`: to the server
/// that connection uses now, with its credentials, speaking the client protocol directly (the
/// parser is `ServerFrame`). Pure apart from reading a password or token file: no socket.
///
/// Deliberately narrow, like the paths that use it: plain TCP, and user/password or a token
/// from the URL or the flags. TLS, nkeys and credentials files throw `NATSError.unsupported`,
/// and the caller keeps nats.c's own path.
public struct PlainLogin: Sendable, Equatable {
    public let host: String
    public let port: UInt16
    /// `CONNECT {…}\r\n`, with the credentials.
    public let connectLine: [UInt8]
    /// The server's URL without its credentials, for logs and errors.
    public let redactedURL: String

    public init(host: String, port: UInt16, connectLine: [UInt8], redactedURL: String) {
        self.host = host
        self.port = port
        self.connectLine = connectLine
        self.redactedURL = redactedURL
    }

    /// `purpose` names the path in errors ("stream scan", "notifier inbox").
    public init(connection: NATSConnection, name: String, purpose: String) throws {
        let options = connection.options
        guard options.tls == nil else { throw NATSError.unsupported("\(purpose) over TLS") }
        let authentication = options.authentication
        guard authentication.nkeySeedFile == nil, authentication.credentialsFile == nil else {
            throw NATSError.unsupported("\(purpose) with an nkey or credentials")
        }
        guard let url = connection.connectedURL else { throw NATSError.connectionClosed(operation: purpose) }
        let endpoint = try ScanEndpoint(url: url, purpose: purpose)
        var connect: [String: Any] = ["verbose": false, "pedantic": false, "tls_required": false, "lang": "swift", "version": "switchboard",
                                      "protocol": 1, "headers": true, "no_responders": true, "echo": false, "name": name]
        if let user = endpoint.user {
            if let password = endpoint.password { connect["user"] = user; connect["pass"] = password } else { connect["auth_token"] = user }
        } else if let user = authentication.user, let passwordFile = authentication.passwordFile {
            connect["user"] = user
            connect["pass"] = try NATSConnection.Options.Authentication.secret(passwordFile, "--nats-password-file")
        } else if let tokenFile = authentication.tokenFile {
            connect["auth_token"] = try NATSConnection.Options.Authentication.secret(tokenFile, "--nats-token-file")
        }
        let json = try JSONSerialization.data(withJSONObject: connect, options: [.sortedKeys])
        host = endpoint.host
        port = endpoint.port
        connectLine = Array("CONNECT ".utf8) + Array(json) + Array("\r\n".utf8)
        redactedURL = NATSConnection.redacted(url)
    }

    /// Checks the server's `INFO` (its JSON): throws `NATSError.unsupported` when the server
    /// requires TLS or does not speak headers.
    public static func checkInfo(_ json: some Collection<UInt8>, purpose: String) throws {
        let info = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any]
        if info?["tls_required"] as? Bool == true { throw NATSError.unsupported("\(purpose) of a server that requires TLS") }
        if info?["headers"] as? Bool == false { throw NATSError.unsupported("\(purpose) of a server without headers") }
    }
}
