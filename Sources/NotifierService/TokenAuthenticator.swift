import Foundation
import JWTKit
import NIOHTTP1
import SwitchboardContracts

/// Why a WebSocket upgrade was refused before it happened (HTTP 401). `rawValue` is the
/// stable reason sent in `X-Switchboard-Auth-Error` and used as the metric label.
public enum AuthFailure: String, Error, Sendable, CaseIterable {
    /// The response header that carries `rawValue` on a 401.
    public static let header = ClientProtocol.authErrorHeader

    case missingToken = "missing_token"
    case malformedToken = "malformed_token"
    case badSignature = "bad_signature"
    case expired = "expired"
    case missingExpiry = "missing_exp"
    case invalidSubject = "invalid_sub"

    /// The human-readable body of the 401 response.
    public var message: String {
        switch self {
        case .missingToken: "no token: send 'Authorization: Bearer <jwt>' or '?token=<jwt>'"
        case .malformedToken: "the token is not a well-formed HS256 JWT"
        case .badSignature: "the token's signature does not verify"
        case .expired: "the token has expired"
        case .missingExpiry: "the token has no 'exp' claim"
        case .invalidSubject: "the token's 'sub' is not a valid user id (1-64 of A-Z a-z 0-9 _ -)"
        }
    }
}

/// The claims of a client token: `sub` is the user id, `exp` is required.
public struct SwitchboardClaims: JWTPayload {
    public var sub: SubjectClaim?
    public var exp: ExpirationClaim?

    public init(sub: SubjectClaim?, exp: ExpirationClaim?) {
        self.sub = sub
        self.exp = exp
    }

    /// Claims are checked by `TokenAuthenticator` against its own clock and leeway.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Verifies the HS256 JWT a client presents on the upgrade request.
public struct TokenAuthenticator: Sendable {
    private let keys: JWTKeyCollection
    /// Clock skew tolerated on `exp`.
    public let leeway: Duration

    public init(secret: [UInt8], leeway: Duration = .seconds(30)) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.leeway = leeway
    }

    /// The user id of a valid token, or why it is not valid.
    public func authenticate(_ token: String?, now: Date = Date()) async -> Result<String, AuthFailure> {
        guard let token, !token.isEmpty else { return .failure(.missingToken) }
        let claims: SwitchboardClaims
        do {
            claims = try await keys.verify(token, as: SwitchboardClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            return .failure(.badSignature)
        } catch {
            return .failure(.malformedToken)
        }
        guard let exp = claims.exp else { return .failure(.missingExpiry) }
        let leewaySeconds = Double(leeway.components.seconds) + Double(leeway.components.attoseconds) / 1e18
        guard now.addingTimeInterval(-leewaySeconds) < exp.value else { return .failure(.expired) }
        guard let subject = claims.sub?.value, Identifier.isValid(subject) else { return .failure(.invalidSubject) }
        return .success(subject)
    }

    /// The token of an upgrade request: `Authorization: Bearer <jwt>`, else `?token=<jwt>`.
    public static func token(from head: HTTPRequestHead) -> String? {
        if let authorization = head.headers.first(name: "authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                return String(parts[1]).trimmingCharacters(in: .whitespaces)
            }
        }
        guard let query = head.uri.firstIndex(of: "?").map({ head.uri[head.uri.index(after: $0)...] }) else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix("token=") {
            return String(pair.dropFirst("token=".count)).removingPercentEncoding
        }
        return nil
    }
}
