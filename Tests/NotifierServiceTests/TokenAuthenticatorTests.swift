import Foundation
import NIOHTTP1
import NotifierDemo
import Testing
@testable import NotifierService

@Suite struct TokenAuthenticatorTests {
    static let secret = Array("test-secret-0123456789abcdef-0123456789".utf8)

    @Test func validTokenYieldsTheSubject() async throws {
        let issuer = await TokenIssuer(secret: Self.secret)
        let auth = await TokenAuthenticator(secret: Self.secret)
        let token = try await issuer.token(user: "alice_01")
        #expect(await auth.authenticate(token) == .success("alice_01"))
    }

    @Test func expiredTokenIsRefusedOutsideTheLeeway() async throws {
        let issuer = await TokenIssuer(secret: Self.secret)
        let auth = await TokenAuthenticator(secret: Self.secret, leeway: .seconds(30))
        let now = Date()
        let recentlyExpired = try await issuer.token(subject: "alice", expiresAt: now.addingTimeInterval(-10))
        let longExpired = try await issuer.token(subject: "alice", expiresAt: now.addingTimeInterval(-31))
        #expect(await auth.authenticate(recentlyExpired, now: now) == .success("alice"))
        #expect(await auth.authenticate(longExpired, now: now) == .failure(.expired))
    }

    @Test func forgedSignatureIsRefused() async throws {
        let forger = await TokenIssuer(secret: Array("another-secret-0123456789abcdef-012345".utf8))
        let auth = await TokenAuthenticator(secret: Self.secret)
        #expect(await auth.authenticate(try await forger.token(user: "alice")) == .failure(.badSignature))
    }

    @Test func tamperedPayloadIsRefused() async throws {
        let issuer = await TokenIssuer(secret: Self.secret)
        let auth = await TokenAuthenticator(secret: Self.secret)
        let parts = try await issuer.token(user: "alice").split(separator: ".").map(String.init)
        let otherPayload = try await issuer.token(user: "mallory").split(separator: ".").map(String.init)[1]
        #expect(await auth.authenticate([parts[0], otherPayload, parts[2]].joined(separator: ".")) == .failure(.badSignature))
    }

    @Test func missingExpiryIsRefused() async throws {
        let issuer = await TokenIssuer(secret: Self.secret)
        let auth = await TokenAuthenticator(secret: Self.secret)
        #expect(await auth.authenticate(try await issuer.token(subject: "alice", expiresAt: nil)) == .failure(.missingExpiry))
    }

    @Test(arguments: ["", "has space", String(repeating: "a", count: 65), "dot.ted", "ümlaut"])
    func subjectMustBeAValidUserID(subject: String) async throws {
        let issuer = await TokenIssuer(secret: Self.secret)
        let auth = await TokenAuthenticator(secret: Self.secret)
        let token = try await issuer.token(subject: subject, expiresAt: Date().addingTimeInterval(60))
        #expect(await auth.authenticate(token) == .failure(.invalidSubject))
    }

    @Test func missingSubjectIsRefused() async throws {
        let issuer = await TokenIssuer(secret: Self.secret)
        let auth = await TokenAuthenticator(secret: Self.secret)
        let token = try await issuer.token(subject: nil, expiresAt: Date().addingTimeInterval(60))
        #expect(await auth.authenticate(token) == .failure(.invalidSubject))
    }

    @Test(arguments: ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
    func malformedTokensAreRefused(token: String) async {
        let auth = await TokenAuthenticator(secret: Self.secret)
        let result = await auth.authenticate(token)
        #expect(result == .failure(.malformedToken) || result == .failure(.badSignature))
    }

    @Test func missingTokenIsRefused() async {
        let auth = await TokenAuthenticator(secret: Self.secret)
        #expect(await auth.authenticate(nil) == .failure(.missingToken))
        #expect(await auth.authenticate("") == .failure(.missingToken))
    }

    @Test func tokenComesFromTheBearerHeaderOrTheQuery() {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws?x=1&token=abc%2Edef")
        #expect(TokenAuthenticator.token(from: head) == "abc.def")
        head.headers.add(name: "Authorization", value: "Bearer header-token")
        #expect(TokenAuthenticator.token(from: head) == "header-token")
        let bare = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws")
        #expect(TokenAuthenticator.token(from: bare) == nil)
    }
}
