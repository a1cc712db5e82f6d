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
    /// Each partition's lease among the fan-out replicas that own it, `fanout.lease.<p>`.
    public static let leases = "FANOUT_LEASES"

    /// The subject filters each stream is defined with (the second one of events and membership
    /// is the unpartitioned form that the stream's subject transform partitions).
    public static let subjects: [String: [String]] = [
        events: ["chat.events.*.*", "chat.events.*"],
        membership: ["chat.membership.*.*.*", "chat.membership.*.*"],
        deadLetters: ["chat.dlq.*"],
        snapshots: ["routing.snapshot.*.>"],
        leases: ["fanout.lease.*"],
    ]
}

/// Why `streams/` could not be read; each case names the file and what is wrong with it.
public enum StreamDefinitionError: Error, CustomStringConvertible, Equatable {
    case directoryMissing(String)
    case invalid(file: String, reason: String)
    case replicasOutOfRange(Int)
    case transformDisagrees(file: String, partitionCount: Int)

    public var description: String {
        switch self {
        case .directoryMissing(let path): "stream definitions not found at \(path) (set --streams-dir)"
        case .invalid(let file, let reason): "stream definition \(file): \(reason)"
        case .replicasOutOfRange(let replicas): "invalid configuration: stream replicas must be 1 to 5, not \(replicas)"
        case .transformDisagrees(let file, let count):
            "stream definition \(file): subject_transform must be one of PartitionMapping's rules for \(count) partitions (streams/deployment.json)"
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
        /// The definition as written (with its `subject_transform`, if any).
        public var json: [UInt8]
        /// The server-side partitioning the stream carries, if any.
        public var subjectTransform: PartitionMapping.Rule?
        /// For servers without stream subject transforms: no transform and no unpartitioned
        /// subject (which such a server would store as is, out of every fan-out's reach).
        public var jsonWithoutSubjectTransform: [UInt8]

        /// What to send to a server that does (`true`) or does not apply subject transforms.
        public func applicableJSON(subjectTransforms: Bool) -> [UInt8] { subjectTransforms ? json : jsonWithoutSubjectTransform }
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
            var overridden = object
            if let replicas { overridden["num_replicas"] = replicas }
            let json = replicas == nil ? Array(data) : try Self.encode(overridden, file: path)
            var transform: PartitionMapping.Rule?
            if let value = object["subject_transform"] {
                guard let fields = value as? [String: Any], let source = fields["src"] as? String,
                      let destination = fields["dest"] as? String, subjects.contains(source)
                else { throw .invalid(file: path, reason: "subject_transform needs \"src\" (one of its subjects) and \"dest\"") }
                transform = PartitionMapping.Rule(source: source, destination: destination)
                overridden["subject_transform"] = nil
                overridden["subjects"] = subjects.filter { $0 != source }
            }
            let plain = transform == nil ? json : try Self.encode(overridden, file: path)
            streams.append(Stream(name: name, subjects: subjects, file: path, json: json, subjectTransform: transform, jsonWithoutSubjectTransform: plain))
        }
        guard let partitionCount else { throw .invalid(file: url.appendingPathComponent(Self.deploymentFile).path, reason: "missing") }
        let rules = PartitionMapping.rules(partitionCount: partitionCount)
        for stream in streams {
            if let transform = stream.subjectTransform, !rules.contains(transform) {
                throw .transformDisagrees(file: stream.file, partitionCount: partitionCount)
            }
        }
        self.streams = streams
        self.partitionCount = partitionCount
    }

    /// Runs `applyStream` (create-or-update on a JetStream connection) on every definition's
    /// JSON, with the subject transforms when the server applies them (nats-server 2.10+).
    public func apply<Result>(subjectTransforms: Bool, _ applyStream: ([UInt8]) throws -> Result) rethrows -> [(name: String, result: Result)] {
        try streams.map { ($0.name, try applyStream($0.applicableJSON(subjectTransforms: subjectTransforms))) }
    }

    private static func encode(_ object: [String: Any], file: String) throws(StreamDefinitionError) -> [UInt8] {
        guard let encoded = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            throw .invalid(file: file, reason: "cannot be re-encoded")
        }
        return Array(encoded)
    }
}
