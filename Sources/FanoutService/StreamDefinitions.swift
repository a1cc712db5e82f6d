import Foundation
import NATSClient

/// The JetStream streams of a deployment, as `streams/*.json` define them (JetStream API
/// format), plus `streams/deployment.json` with the deployment's fixed partition count.
public struct StreamDefinitions: Sendable {
    public struct Stream: Sendable {
        public var name: String
        public var file: String
        public var json: [UInt8]
    }

    public static let deploymentFile = "deployment.json"

    public var streams: [Stream]
    /// `P`: fixed per deployment, every publisher and replica must agree on it.
    public var partitionCount: Int

    /// `replicas` overrides every stream's `num_replicas` (a clustered deployment runs R3 from
    /// the same files a single server runs R1).
    public init(directory: String, replicas: Int? = nil) throws(FanoutError) {
        let url = URL(fileURLWithPath: directory)
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw .streamsDirectoryMissing(url.path)
        }
        var streams: [Stream] = []
        var partitionCount: Int?
        for file in files {
            let path = url.appendingPathComponent(file).path
            guard let data = FileManager.default.contents(atPath: path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { throw .streamDefinition(file: path, reason: "not a JSON object") }
            if file == Self.deploymentFile {
                guard let count = object["partition_count"] as? Int, count >= 1 else {
                    throw .streamDefinition(file: path, reason: "partition_count must be a positive integer")
                }
                partitionCount = count
                continue
            }
            guard let name = object["name"] as? String, !name.isEmpty, object["subjects"] is [String] else {
                throw .streamDefinition(file: path, reason: "needs \"name\" and \"subjects\"")
            }
            var json = Array(data)
            if let replicas {
                guard (1...5).contains(replicas) else { throw .invalidConfiguration("stream replicas must be 1 to 5, not \(replicas)") }
                var overridden = object
                overridden["num_replicas"] = replicas
                guard let encoded = try? JSONSerialization.data(withJSONObject: overridden, options: [.sortedKeys]) else {
                    throw .streamDefinition(file: path, reason: "cannot re-encode with num_replicas \(replicas)")
                }
                json = Array(encoded)
            }
            streams.append(Stream(name: name, file: path, json: json))
        }
        guard let partitionCount else { throw .streamDefinition(file: url.appendingPathComponent(Self.deploymentFile).path, reason: "missing") }
        self.streams = streams
        self.partitionCount = partitionCount
    }

    /// Creates missing streams and updates changed ones; unchanged ones are left alone.
    public func apply(to jetStream: JetStream) throws -> [(name: String, result: JetStream.StreamApplyResult)] {
        try streams.map { ($0.name, try jetStream.applyStream(configJSON: $0.json)) }
    }
}
