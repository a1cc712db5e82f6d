import Foundation
@testable import NATSClient
import SwitchboardHarness
import Synchronization
import Testing

/// TLS and user/password towards a real nats-server: what works, and the clear error of each
/// way it can fail.
@Suite("Secured connections against a real nats-server")
struct SecureConnectionTests {
    /// A publish that comes back through a subscription of the same connection.
    private func roundTrip(_ connection: NATSConnection) throws -> Bool {
        let got = Mutex(false)
        let subscription = try connection.subscribe("secure.check") { _ in got.withLock { $0 = true } }
        defer { subscription.unsubscribe() }
        try connection.publish("secure.check", payload: Array("ping".utf8))
        try connection.flush(timeout: .seconds(2))
        return eventually(timeout: .seconds(2)) { got.withLock { $0 } }
    }

    @Test func tlsWithTheSigningCAConnectsAndWithoutItFailsClearly() throws {
        let files = try TemporaryDirectory(prefix: "switchboard-test-tls")
        defer { files.remove() }
        let server = try TestCertificates(in: files.url)
        let stranger = try TestCertificates(in: files.url, name: "stranger")
        let nats = try NATSServerFixture(extraArguments: ["--tls", "--tlscert", server.certFile, "--tlskey", server.keyFile])
        defer { nats.stop() }

        let secure = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, tls: .init(caFile: server.caFile)))
        defer { secure.close() }
        #expect(try roundTrip(secure))

        // The server requires TLS: a plain connection is refused.
        #expect(throws: NATSError.self) { _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0)) }
        // A CA that did not sign the server's certificate: verification fails.
        do {
            _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0, tls: .init(caFile: stranger.caFile)))
            Issue.record("connected while trusting another CA")
        } catch let error as NATSError {
            #expect("\(error)".lowercased().contains("ssl") || "\(error)".lowercased().contains("certificate") || "\(error)".lowercased().contains("tls"), "\(error)")
        }
        // Files that are not there are named before anything is sent.
        do {
            _ = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, tls: .init(caFile: files.url.appendingPathComponent("missing.pem").path)))
            Issue.record("connected with a missing CA file")
        } catch let error as NATSError {
            #expect("\(error)".contains("missing.pem"), "\(error)")
        }
        #expect(throws: NATSError.self) { _ = try NATSConnection(options: .init(url: nats.url, tls: .init(certFile: server.certFile))) }
    }

    /// `verify: true`: the server takes only clients whose certificate its client CA signed.
    @Test func mutualTLSAcceptsTheClientCertificateItsCASignedAndNoOther() throws {
        let files = try TemporaryDirectory(prefix: "switchboard-test-mtls")
        defer { files.remove() }
        let server = try TestCertificates(in: files.url)
        let client = try TestCertificates(in: files.url, name: "client")
        let stranger = try TestCertificates(in: files.url, name: "stranger")
        let nats = try NATSServerFixture(extraArguments: ["--tlsverify", "--tlscert", server.certFile, "--tlskey", server.keyFile, "--tlscacert", client.caFile])
        defer { nats.stop() }
        let verified = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, tls: .init(caFile: server.caFile, certFile: client.certFile, keyFile: client.keyFile)))
        defer { verified.close() }
        #expect(try roundTrip(verified))
        #expect(throws: NATSError.self, "no client certificate") {
            _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0, tls: .init(caFile: server.caFile)))
        }
        #expect(throws: NATSError.self, "a certificate another CA signed") {
            _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0, tls: .init(caFile: server.caFile, certFile: stranger.certFile, keyFile: stranger.keyFile)))
        }
    }

    @Test func userAndPasswordInTheURLAuthenticateAndAreLeftOutOfErrors() throws {
        let nats = try NATSServerFixture(extraArguments: ["--user", "fanout", "--pass", "s3cret-pw"])
        defer { nats.stop() }
        let port = nats.port
        let connection = try NATSConnection(options: .init(url: "nats://fanout:s3cret-pw@127.0.0.1:\(port)", maxReconnects: 0))
        defer { connection.close() }
        #expect(try roundTrip(connection))
        do {
            _ = try NATSConnection(options: .init(url: "nats://fanout:wrong-pw@127.0.0.1:\(port)", connectTimeout: .seconds(2), maxReconnects: 0))
            Issue.record("connected with a wrong password")
        } catch let error as NATSError {
            #expect("\(error)".lowercased().contains("authorization"), "\(error)")
            #expect(!"\(error)".contains("wrong-pw"), "the password must not be in the message: \(error)")
        }
        #expect(NATSConnection.redacted("nats://u:p@a:4222,nats://b:4222,tls://tok@c:4222") == "nats://u:***@a:4222,nats://b:4222,tls://***@c:4222")
    }

    /// Operator mode, as `nsc` sets it up: a user's `.creds` file (JWT and nkey seed) signed by
    /// an account the operator signed.
    @Test func aCredentialsFileOfTheTrustedAccountConnectsAndUsesJetStreamAndOthersAreRefused() throws {
        let files = try TemporaryDirectory(prefix: "switchboard-test-creds")
        defer { files.remove() }
        let trust = NATSOperator()
        let config = files.url.appendingPathComponent("operator.conf")
        try trust.serverConfiguration().write(to: config, atomically: true, encoding: .utf8)
        func write(_ name: String, _ text: String) throws -> String {
            let url = files.url.appendingPathComponent(name)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        let good = try write("fanout.creds", try trust.credentials(user: "fanout"))
        let untrusted = try write("stranger.creds", try trust.credentials(user: "stranger", signedBy: NATSOperator.NKey(.account)))
        let nats = try NATSServerFixture(extraArguments: ["-c", config.path])
        defer { nats.stop() }

        let connection = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, authentication: .init(credentialsFile: good)))
        defer { connection.close() }
        #expect(try roundTrip(connection))
        let jetStream = try connection.jetStream()
        _ = try jetStream.applyStream(configJSON: Array(#"{"name":"CREDS_CHECK","subjects":["creds.check"],"storage":"memory"}"#.utf8))
        #expect(try jetStream.publish("creds.check", payload: [1]).sequence == 1)

        #expect(throws: NATSError.self, "no credentials") { _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0)) }
        do {
            _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0, authentication: .init(credentialsFile: untrusted)))
            Issue.record("connected as a user of an account the operator did not sign")
        } catch let error as NATSError {
            #expect("\(error)".lowercased().contains("authorization"), "\(error)")
        }
        do {
            _ = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, authentication: .init(credentialsFile: files.url.appendingPathComponent("missing.creds").path)))
            Issue.record("connected with a credentials file that does not exist")
        } catch let error as NATSError {
            #expect("\(error)".contains("missing.creds"), "\(error)")
        }

        // routectl takes the file too: it reaches NATS (exit 2: no replica answered, not 3).
        let routectl = try ServerProcess(name: "routectl", executable: BuiltProducts.path("routectl"),
                                         arguments: ["stats", "--timeout", "0.5", "--nats-url", nats.url, "--nats-creds", good],
                                         logURL: files.url.appendingPathComponent("routectl.log"))
        #expect(routectl.waitForExit(timeout: .seconds(10)) == 2, "\(routectl.log())")
    }

    /// Secrets from files: a password (with --nats-user), a token, an nkey seed; each read once,
    /// its trailing newline trimmed; a wrong or missing one is a clear error.
    @Test func passwordTokenAndNkeySeedFilesAuthenticate() throws {
        let files = try TemporaryDirectory(prefix: "switchboard-test-auth")
        defer { files.remove() }
        func write(_ name: String, _ text: String) throws -> String {
            let url = files.url.appendingPathComponent(name)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        let password = try write("password", "s3cret-pw\n")
        let wrong = try write("wrong", "not-it\n")
        let empty = try write("empty", "\n")
        let withPassword = try NATSServerFixture(extraArguments: ["--user", "fanout", "--pass", "s3cret-pw"])
        defer { withPassword.stop() }
        let user = try NATSConnection(options: .init(url: withPassword.url, maxReconnects: 0, authentication: .init(user: "fanout", passwordFile: password)))
        #expect(try roundTrip(user))
        user.close()
        #expect(throws: NATSError.self) { _ = try NATSConnection(options: .init(url: withPassword.url, connectTimeout: .seconds(2), maxReconnects: 0, authentication: .init(user: "fanout", passwordFile: wrong))) }
        do {
            _ = try NATSConnection(options: .init(url: withPassword.url, maxReconnects: 0, authentication: .init(user: "fanout", passwordFile: empty)))
            Issue.record("connected with an empty password file")
        } catch let error as NATSError {
            #expect("\(error)".contains("--nats-password-file") && "\(error)".contains("empty"), "\(error)")
        }
        do {
            _ = try NATSConnection(options: .init(url: withPassword.url, maxReconnects: 0, authentication: .init(passwordFile: password)))
            Issue.record("a password file without a user was accepted")
        } catch let error as NATSError {
            #expect("\(error)".contains("--nats-user"), "\(error)")
        }

        let token = try write("token", "t0ken-value\n")
        let withToken = try NATSServerFixture(extraArguments: ["--auth", "t0ken-value"])
        defer { withToken.stop() }
        let tokened = try NATSConnection(options: .init(url: withToken.url, maxReconnects: 0, authentication: .init(tokenFile: token)))
        #expect(try roundTrip(tokened))
        tokened.close()

        // An nkey user: the server lists the public key; the client holds the seed.
        let raw = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let seed = NKeys.seed(raw, kind: .user)
        let publicKey = try NKeys.publicKey(ofSeed: seed)
        #expect(publicKey.hasPrefix("U") && seed.hasPrefix("SU"))
        let config = try write("nkey.conf", "authorization { users = [ { nkey: \(publicKey) } ] }\n")
        let seedFile = try write("user.nk", seed + "\n")
        let withNkey = try NATSServerFixture(extraArguments: ["-c", config])
        defer { withNkey.stop() }
        let signed = try NATSConnection(options: .init(url: withNkey.url, maxReconnects: 0, authentication: .init(nkeySeedFile: seedFile)))
        #expect(try roundTrip(signed))
        signed.close()
        let otherSeed = try write("other.nk", NKeys.seed((0..<32).map { _ in UInt8.random(in: 0...255) }, kind: .user))
        #expect(throws: NATSError.self) { _ = try NATSConnection(options: .init(url: withNkey.url, connectTimeout: .seconds(2), maxReconnects: 0, authentication: .init(nkeySeedFile: otherSeed))) }
        let garbled = try write("garbled.nk", "SUNOTASEED")
        #expect(throws: NATSError.self) { _ = try NATSConnection(options: .init(url: withNkey.url, maxReconnects: 0, authentication: .init(nkeySeedFile: garbled))) }
        #expect(throws: NATSError.self, "two methods at once") {
            _ = try NATSConnection(options: .init(url: withNkey.url, maxReconnects: 0, authentication: .init(tokenFile: token, nkeySeedFile: seedFile)))
        }

        // routectl takes the same flags: it reaches NATS (exit 2: no replica answered, not 3).
        let routectl = try ServerProcess(name: "routectl", executable: BuiltProducts.path("routectl"),
                                         arguments: ["stats", "--timeout", "0.5", "--nats-url", withPassword.url, "--nats-user", "fanout", "--nats-password-file", password],
                                         logURL: files.url.appendingPathComponent("routectl.log"))
        #expect(routectl.waitForExit(timeout: .seconds(10)) == 2, "\(routectl.log())")
    }

    /// A permission violation after connecting reaches the handler with the server's words
    /// (the services log and count it).
    @Test func aPermissionViolationIsReportedToTheAsyncErrorHandler() throws {
        let files = try TemporaryDirectory(prefix: "switchboard-test-violation")
        defer { files.remove() }
        let config = files.url.appendingPathComponent("users.conf")
        try #"authorization { users = [ { user: a, password: b, permissions: { subscribe: { allow: ["allowed.>", "_INBOX.>"] } } } ] }"#
            .write(to: config, atomically: true, encoding: .utf8)
        let nats = try NATSServerFixture(extraArguments: ["-c", config.path])
        defer { nats.stop() }
        let reported = Mutex<[String]>([])
        let connection = try NATSConnection(options: .init(url: "nats://a:b@127.0.0.1:\(nats.port)", maxReconnects: 0, onAsyncError: { error in reported.withLock { $0.append(error) } }))
        defer { connection.close() }
        let subscription = try connection.subscribe("forbidden.subject") { _ in }
        defer { subscription.unsubscribe() }
        try? connection.flush(timeout: .seconds(2))
        #expect(eventually(timeout: .seconds(5)) { reported.withLock { $0.contains { $0.localizedCaseInsensitiveContains("permission") && $0.contains("forbidden.subject") } } }, "\(reported.withLock { $0 })")
    }
}
