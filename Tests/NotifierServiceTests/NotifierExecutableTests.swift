import Foundation
import NotifierDemo
import NotifierService
import RedisClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

/// The `notifier` command line: flags, environment fallbacks, one-line configuration errors.
@Suite(.serialized) struct NotifierExecutableTests {
    /// Runs `notifier` to completion; returns its status and stderr.
    private func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("notifier"))
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SWITCHBOARD_") }
        env.merge(environment) { _, new in new }
        process.environment = env
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(arguments: [
        (["--jwt-secret", NotifierFixture.secret], "--instance-id is required"),
        (["--instance-id", "bad id", "--jwt-secret", NotifierFixture.secret], "--instance-id"),
        (["--instance-id", "n1"], "--jwt-secret"),
        (["--instance-id", "n1", "--jwt-secret", "short"], "at least 32 bytes"),
        (["--instance-id", "n1", "--jwt-secret", NotifierFixture.secret, "--listen", "nowhere"], "--listen"),
        (["--instance-id", "n1", "--jwt-secret", NotifierFixture.secret, "--max-connections", "0"], "--max-connections"),
        (["--instance-id", "n1", "--jwt-secret", NotifierFixture.secret, "--log-level", "loud"], "--log-level"),
        (["--instance-id", "n1", "--jwt-secret-file", "/nonexistent/secret"], "--jwt-secret-file"),
        (["--no-such-flag"], "no-such-flag"),
        (["--instance-id", "n1", "--jwt-secret", NotifierFixture.secret, "--outbound-buffer-bytes", "65536"], "--outbound-buffer-bytes must be at least 197120"),
        (["--instance-id", "n1", "--jwt-secret", NotifierFixture.secret, "--nats-url", "nats://127.0.0.1:1"], "NATS"),
    ])
    func invalidConfigurationExitsOneWithOneLine(arguments: [String], mentions: String) throws {
        let (status, stderr) = try run(arguments + ["--listen", "127.0.0.1:0"].filter { _ in !arguments.contains("--listen") })
        #expect(status == 1)
        let lines = stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(stderr)")
        #expect(lines.first?.hasPrefix("notifier: ") == true)
        #expect(stderr.contains(mentions), "\(stderr)")
    }

    @Test func environmentVariablesConfigureEveryFlag() async throws {
        let nats = try NATSServerFixture()
        let redis = try RedisServerFixture()
        let directory = try TemporaryDirectory(prefix: "switchboard-test-notifier-env")
        let port = try LoopbackPort.free()
        let secretFile = directory.url.appendingPathComponent("secret")
        try Data((NotifierFixture.secret + "\n").utf8).write(to: secretFile)
        let notifier = try ServerProcess(
            name: "notifier", executable: BuiltProducts.path("notifier"), arguments: [],
            environment: [
                "SWITCHBOARD_INSTANCE_ID": "from-env", "SWITCHBOARD_NATS_URL": nats.url, "SWITCHBOARD_REDIS_URL": redis.url,
                "SWITCHBOARD_LISTEN": "127.0.0.1:\(port)", "SWITCHBOARD_JWT_SECRET_FILE": secretFile.path,
                "SWITCHBOARD_DRAIN_SECONDS": "0.1",
            ],
            logURL: directory.url.appendingPathComponent("notifier.log")
        )
        defer {
            notifier.stop()
            nats.stop()
            if let connection = try? RedisConnection(url: redis.url, timeout: .seconds(1)) { _ = try? connection.command(["SHUTDOWN", "NOSAVE"]) }
            redis.stop()
            directory.remove()
        }
        #expect(HTTPProbe.waitFor200(port: port, path: "/readyz", timeout: .seconds(10)), "\(notifier.log())")
        let connection = try RedisConnection(url: redis.url, timeout: .seconds(2))
        defer { connection.close() }
        #expect(eventually(timeout: .seconds(3)) { (try? connection.command(["ZSCORE", PresenceKeys.instances, "from-env"]))?.text != nil })
        // The secret from the file (trailing newline dropped) verifies tokens.
        let token = try await TokenIssuer(secret: Array(NotifierFixture.secret.utf8)).token(user: "zed")
        let client = try WebSocketTestClient(port: Int(port), headers: ["Authorization": "Bearer \(token)"])
        #expect(try client.receiveText()?.contains(#""instance":"from-env""#) == true)
        let metrics = try HTTPProbe.get(port: port, path: "/metrics").body
        #expect(metrics.contains("switchboard_notifier_connections 1"))
    }
}
