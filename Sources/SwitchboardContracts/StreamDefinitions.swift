import Foundation

/// The JetStream streams of a deployment and the subjects each one stores (the same as in
/// `streams/*.json`; the contract tests check that they agree).
public enum StreamNames {
    /// Chat events, `chat.events.<p>.<channel>`.
    public static let events = "CHAT_EVENTS"
    /// Membership facts, one per `chat.membership.<p>.<channel>.<user>` (compacted).
    public static let membership = "CHAT_MEMBERSHIP"
    /// Events the fan-out could not route, `chat.dlq.<p>`, with the reason in a header.
    public static let deadLetters = "CHAT_DLQ"
    /// Routing-table images and their manifests, `routing.snapshot.<p>.…`.
    public static let snapshots = "ROUTING_SNAPSHOTS"

    /// The subject filters each stream is defined with.
    public static let subjects: [String: [String]] = [
        events: ["chat.events.*.*"],
        membership: ["chat.membership.*.*.*"],
        deadLetters: ["chat.dlq.*"],
        snapshots: ["routing.snapshot.*.>"],
    ]
}

/// Why `streams/` could not be read; each case names the file and what is wrong with it.
public enum StreamDefinitionError: Error, CustomStringConvertible, Equatable {
    case directoryMissing(String)
    case invalid(file: String, reason: String)
    case replicasOutOfRange(Int)

    public var description: String {
        switch self {
        case .directoryMissing(let path): "stream definitions not found at \(path) (set --streams-dir)"
        case .invalid(let file, let reason): "stream definition \(file): \(reason)"
        case .replicasOutOfRange(let replicas): "invalid configuration: stream replicas must be 1 to 5, not \(replicas)"
        }
    }
}

/// The JetStream streams of a deployment, as `streams/*.json` define them (JetStream API
/// format), plus `streams/deployment.json` with the deployment's fixed partition count.
/// Applying them is the caller's (the NATS client lives outside this module).
public struct StreamDefinitions: Sendable {
    /// One stream's definition: its name, its subject filters and the JSON to send to JetStream.
    public struct Stream: Sendable {
        public var name: String
        public var subjects: [String]
        public var file: String
        public var json: [UInt8]
    }

    public static let deploymentFile = "deployment.json"

    public var streams: [Stream]
    /// `P`: fixed per deployment, every publisher and replica must agree on it.
    public var partitionCount: Int

    /// `replicas` overrides every stream's `num_replicas` (a clustered deployment runs R3 from
    /// the same files a single server runs R1).
    public init(directory: String, replicas: Int? = nil) throws(StreamDefinitionError) {
        let url = URL(fileURLWithPath: directory)
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw .directoryMissing(url.path)
        }
        if let replicas, !(1...5).contains(replicas) { throw .replicasOutOfRange(replicas) }
        var streams: [Stream] = []
        var partitionCount: Int?
        for file in files {
            let path = url.appendingPathComponent(file).path
            guard let data = FileManager.default.contents(atPath: path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { throw .invalid(file: path, reason: "not a JSON object") }
            if file == Self.deploymentFile {
                guard let count = object["partition_count"] as? Int, count >= 1 else {
                    throw .invalid(file: path, reason: "partition_count must be a positive integer")
                }
                partitionCount = count
                continue
            }
            guard let name = object["name"] as? String, !name.isEmpty, let subjects = object["subjects"] as? [String] else {
                throw .invalid(file: path, reason: "needs \"name\" and \"subjects\"")
            }
            var json = Array(data)
            if let replicas {
                var overridden = object
                overridden["num_replicas"] = replicas
                guard let encoded = try? JSONSerialization.data(withJSONObject: overridden, options: [.sortedKeys]) else {
                    throw .invalid(file: path, reason: "cannot re-encode with num_replicas \(replicas)")
                }
                json = Array(encoded)
            }
            streams.append(Stream(name: name, subjects: subjects, file: path, json: json))
        }
        guard let partitionCount else { throw .invalid(file: url.appendingPathComponent(Self.deploymentFile).path, reason: "missing") }
        self.streams = streams
        self.partitionCount = partitionCount
    }

    /// Runs `applyStream` (create-or-update on a JetStream connection) on every definition's JSON.
    public func apply<Result>(_ applyStream: ([UInt8]) throws -> Result) rethrows -> [(name: String, result: Result)] {
        try streams.map { ($0.name, try applyStream($0.json)) }
    }
}
