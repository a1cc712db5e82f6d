import Foundation
import JWTKit
import NotifierService

/// Signs tokens in the notifier's format: for tests, benchmarks and local development
/// (production tokens come from the identity service that shares the secret).
public struct TokenIssuer: Sendable {
    private let keys: JWTKeyCollection

    public init(secret: [UInt8]) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// A token for `subject` (omitted when nil) expiring at `expiresAt` (omitted when nil).
    public func token(subject: String?, expiresAt: Date?) async throws -> String {
        try await keys.sign(SwitchboardClaims(sub: subject.map(SubjectClaim.init(value:)), exp: expiresAt.map(ExpirationClaim.init(value:))))
    }

    /// A token for `user` valid for `lifetime`.
    public func token(user: String, lifetime: Duration = .seconds(3600)) async throws -> String {
        try await token(subject: user, expiresAt: Date().addingTimeInterval(Double(lifetime.components.seconds)))
    }
}
