import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardHarness

/// Starts a real nats-server with JetStream, connects, runs `body`, and stops both in every path.
func withNATS<R>(_ body: (NATSServerFixture, NATSConnection) throws -> R) throws -> R {
    let server = try NATSServerFixture()
    defer { server.stop() }
    let connection = try NATSConnection(options: .init(url: server.url, name: "natsclient-tests", connectTimeout: .seconds(2)))
    defer { connection.close() }
    return try body(server, connection)
}

/// Values collected from nats.c's delivery threads.
final class Collected<Element: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Element] = []

    func append(_ element: Element) { lock.withLock { storage.append(element) } }
    var values: [Element] { lock.withLock { storage } }
    var count: Int { lock.withLock { storage.count } }
}

/// The stream definitions of `streams/` as every server applies them (without subject
/// transforms, which nats-server 2.9 ignores; PartitionMappingTests cover those).
func streamDefinitionFiles() throws -> [(name: String, json: [UInt8])] {
    // Resolved: Foundation on Linux lists a symlinked directory as empty.
    let directory = URL(fileURLWithPath: RepositoryPaths.streams).resolvingSymlinksInPath().path
    return try StreamDefinitions(directory: directory).streams.map { ($0.name, $0.applicableJSON(subjectTransforms: false)) }
}

/// The definition of `name` from `streams/`, with `changes` applied to its JSON.
func streamDefinition(_ name: String, changing changes: [String: Any] = [:]) throws -> [UInt8] {
    guard let file = try streamDefinitionFiles().first(where: { $0.name == name }) else {
        throw NATSError.invalidArgument("no streams/\(name).json")
    }
    if changes.isEmpty { return file.json }
    var object = try JSONSerialization.jsonObject(with: Data(file.json)) as! [String: Any]
    object.merge(changes) { _, new in new }
    return Array(try JSONSerialization.data(withJSONObject: object))
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
