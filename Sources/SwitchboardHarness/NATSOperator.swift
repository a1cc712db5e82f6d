import Crypto
import Foundation
import NATSClient

/// A NATS operator of its own for tests of credentials files: an operator, a system account
/// and one application account with JetStream, each an nkey signing the next one's JWT as
/// `nsc` would, the server configuration that trusts them (memory resolver), and `.creds`
/// files for users of the account.
public struct NATSOperator: Sendable {
    /// An ed25519 key of one kind, encoded as nkeys (`NKeys`).
    public struct NKey: Sendable {
        public typealias Kind = NKeys.Kind
        let kind: Kind
        let key: Curve25519.Signing.PrivateKey

        public init(_ kind: Kind) {
            self.kind = kind
            key = Curve25519.Signing.PrivateKey()
        }

        public var publicKey: String { NKeys.publicKey(Array(key.publicKey.rawRepresentation), kind: kind) }
        public var seed: String { NKeys.seed(Array(key.rawRepresentation), kind: kind) }

        func sign(_ bytes: [UInt8]) throws -> [UInt8] { Array(try key.signature(for: bytes)) }
    }

    public let operatorKey = NKey(.operatorKey)
    public let systemAccount = NKey(.account)
    public let account = NKey(.account)

    public init() {}

    /// What nats-server reads (`-c`): trust in the operator, the two accounts preloaded.
    public func serverConfiguration() throws -> String {
        let operatorJWT = try Self.jwt(issuer: operatorKey, subject: operatorKey.publicKey, name: "switchboard-test", nats: ["type": "operator", "version": 2])
        let limits: [String: Any] = [
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        ]
        let system = try Self.jwt(issuer: operatorKey, subject: systemAccount.publicKey, name: "SYS", nats: ["type": "account", "version": 2, "limits": limits.filter { !$0.key.hasSuffix("storage") && $0.key != "streams" && $0.key != "consumer" }])
        let application = try Self.jwt(issuer: operatorKey, subject: account.publicKey, name: "switchboard", nats: ["type": "account", "version": 2, "limits": limits])
        return """
        operator: "\(operatorJWT)"
        system_account: "\(systemAccount.publicKey)"
        resolver: MEMORY
        resolver_preload: {
          \(systemAccount.publicKey): "\(system)"
          \(account.publicKey): "\(application)"
        }

        """
    }

    /// A `.creds` file's text for a new user of `signer` (the application account unless
    /// another key is given: one the server does not trust makes a user it refuses).
    public func credentials(user name: String, signedBy signer: NKey? = nil) throws -> String {
        let user = NKey(.user)
        let jwt = try Self.jwt(issuer: signer ?? account, subject: user.publicKey, name: name,
                               nats: ["type": "user", "version": 2, "pub": [String: Any](), "sub": [String: Any](), "subs": -1, "data": -1, "payload": -1])
        return """
        -----BEGIN NATS USER JWT-----
        \(jwt)
        ------END NATS USER JWT------

        ************************* IMPORTANT *************************
        NKEY Seed printed below can be used to sign and prove identity.
        NKEYs are sensitive and should be treated as secrets.

        -----BEGIN USER NKEY SEED-----
        \(user.seed)
        ------END USER NKEY SEED------

        *************************************************************

        """
    }

    /// A NATS JWT (`ed25519-nkey`): header and claims in base64url, signed by `issuer`.
    static func jwt(issuer: NKey, subject: String, name: String, nats: [String: Any]) throws -> String {
        var claims: [String: Any] = ["iat": Int(Date().timeIntervalSince1970), "iss": issuer.publicKey, "sub": subject, "name": name, "nats": nats]
        let unidentified = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        claims["jti"] = NKeys.base32Encode(Array(SHA256.hash(data: unidentified)))
        let header = base64URL(Array(#"{"typ":"JWT","alg":"ed25519-nkey"}"#.utf8))
        let body = base64URL(Array(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])))
        let signed = "\(header).\(body)"
        return "\(signed).\(base64URL(try issuer.sign(Array(signed.utf8))))"
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
