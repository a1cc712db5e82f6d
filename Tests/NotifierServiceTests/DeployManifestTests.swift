import Foundation
import SwitchboardHarness
import Testing

/// deploy/k8s validated offline by deploy/k8s/validate.py: Kubernetes JSON schemas (strict)
/// plus the couplings a schema cannot see (replica count vs. partition split, drain vs.
/// grace period, probes, PDBs). Lives here because the notifier's StatefulSet is the part
/// with the most of them.
@Suite struct DeployManifestTests {
    private static let directory = RepositoryPaths.root.appendingPathComponent("deploy/k8s")

    @Test func manifestsPassSchemaAndConsistencyChecks() throws {
        let (status, output) = try validate(Self.directory)
        #expect(status == 0, "\(output)")
        #expect(output.contains("(strict): ok"))
    }

    @Test func aBrokenManifestIsReported() throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-k8s-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Self.directory, to: copy)
        defer { try? FileManager.default.removeItem(at: copy) }
        let notifier = copy.appendingPathComponent("notifier.yaml")
        let text = try String(contentsOf: notifier, encoding: .utf8)
        try text.replacingOccurrences(of: "terminationGracePeriodSeconds: 40", with: "terminationGracePeriodSeconds: 10")
            .replacingOccurrences(of: "minReadySeconds: 10", with: "minReadySeconds: ten")
            .write(to: notifier, atomically: true, encoding: .utf8)
        let (status, output) = try validate(copy)
        #expect(status == 1)
        #expect(output.contains("minReadySeconds: 'ten' is not of type 'integer'"), "\(output)")
        #expect(output.contains("pods would be killed mid-drain"), "\(output)")
    }

    private func validate(_ directory: URL) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [SwitchboardHarness.PythonPeer.interpreter, Self.directory.appendingPathComponent("validate.py").path, directory.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
