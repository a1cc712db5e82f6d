import Foundation
import NATSClient
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

        let connection = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, credentialsFile: good))
        defer { connection.close() }
        #expect(try roundTrip(connection))
        let jetStream = try connection.jetStream()
        _ = try jetStream.applyStream(configJSON: Array(#"{"name":"CREDS_CHECK","subjects":["creds.check"],"storage":"memory"}"#.utf8))
        #expect(try jetStream.publish("creds.check", payload: [1]).sequence == 1)

        #expect(throws: NATSError.self, "no credentials") { _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0)) }
        do {
            _ = try NATSConnection(options: .init(url: nats.url, connectTimeout: .seconds(2), maxReconnects: 0, credentialsFile: untrusted))
            Issue.record("connected as a user of an account the operator did not sign")
        } catch let error as NATSError {
            #expect("\(error)".lowercased().contains("authorization"), "\(error)")
        }
        do {
            _ = try NATSConnection(options: .init(url: nats.url, maxReconnects: 0, credentialsFile: files.url.appendingPathComponent("missing.creds").path))
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
}
