import Foundation

/// A throwaway certificate authority and a server certificate for 127.0.0.1 signed by it
/// (RSA 2048, valid two days), made with the `openssl` command line in `directory`: TLS tests
/// run real servers with real certificates.
public struct TestCertificates: Sendable {
    public let caFile: String
    public let certFile: String
    public let keyFile: String

    public init(in directory: URL, name: String = "server") throws {
        func path(_ file: String) -> String { directory.appendingPathComponent(file).path }
        let ext = path("\(name).ext")
        try Data("subjectAltName=IP:127.0.0.1,DNS:localhost\n".utf8).write(to: URL(fileURLWithPath: ext))
        try Self.openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(name)-ca.key"), "-out", path("\(name)-ca.pem"),
                          "-days", "2", "-subj", "/CN=switchboard-test-ca-\(name)"])
        try Self.openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=127.0.0.1"])
        try Self.openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(name)-ca.pem"), "-CAkey", path("\(name)-ca.key"),
                          "-CAcreateserial", "-out", path("\(name).pem"), "-days", "2", "-extfile", ext])
        caFile = path("\(name)-ca.pem")
        certFile = path("\(name).pem")
        keyFile = path("\(name).key")
    }

    private static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ServerProcess.resolve("openssl"))
        process.arguments = arguments
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw FixtureError.setup("openssl \(arguments.first ?? "") failed: \(String(decoding: output, as: UTF8.self))")
        }
    }
}
