import Foundation
import NATSClient
import RoutingCore
import SwitchboardContracts

/// Reads and writes routing-table images in the `ROUTING_SNAPSHOTS` stream.
///
/// Layout per partition `p`: the image is cut into chunks of at most `chunkBytes` published
/// on `routing.snapshot.<p>.<generation>.<index>`, then a JSON manifest on
/// `routing.snapshot.<p>.manifest` (the stream keeps one message per subject). The manifest
/// is written last, so a reader that trusts only the manifest never sees a half-written
/// image; the generation (the membership sequence the image covers) keeps a new image's
/// chunks apart from the old ones until the old ones are purged.
///
/// The user ids the images refer to are the writing replica's `UserDictionary`, stored once
/// per replica as segments on `routing.snapshot.users.<replica>.<slot>.<segment>`; a manifest
/// names the dictionary (replica, slot, lineage) and how many of its entries the image needs,
/// and the segments it needs are written before it.
public struct SnapshotStore: Sendable {
    public static let stream = StreamNames.snapshots
    /// JetStream's default max message size is 1 MB; stay under it with headers.
    public static let chunkBytes = 1_000_000

    /// The dictionary slots of a replica: a new lineage is written into the one its loaded
    /// images did not refer to, so those stay readable until they are rewritten.
    public static let dictionarySlots = ["a", "b"]

    /// Which dictionary an image's member ids refer to.
    public struct DictionaryReference: Codable, Sendable, Hashable {
        /// `replicaToken` of the writing replica.
        public var replica: String
        public var slot: String
        /// The writing interner's lineage, hex.
        public var lineage: String
        /// Entries the image needs (ids below this).
        public var users: Int
        /// Bytes of the dictionary's segments written by then (what the image costs on top of its own bytes).
        public var bytes: Int

        /// The dictionary itself, without how much of it an image needs.
        var source: Source { Source(replica: replica, slot: slot, lineage: lineage) }

        struct Source: Hashable, CustomStringConvertible {
            var replica: String
            var slot: String
            var lineage: String
            var description: String { "\(replica).\(slot) lineage \(lineage)" }
        }
    }

    /// A replica id as one subject token.
    public static func replicaToken(_ replicaID: String) -> String { String(fnv1a64(Array(replicaID.utf8)), radix: 16) }

    /// What a reader needs to find, check and trust an image.
    public struct Manifest: Codable, Sendable, Equatable {
        public var partition: Int
        public var partitionCount: Int
        public var generation: UInt64
        /// Every `CHAT_MEMBERSHIP` message up to this stream sequence is in the image.
        public var membershipSequence: UInt64
        public var chunks: Int
        public var bytes: Int
        /// FNV-1a 64 of the whole image, hex.
        public var checksum: String
        public var createdAtMs: Int64
        public var replica: String
        /// Absent for a version 1 image, which lists its own users.
        public var dictionary: DictionaryReference?

        enum CodingKeys: String, CodingKey {
            case partition, generation, chunks, bytes, checksum, replica, dictionary
            case partitionCount = "partition_count"
            case membershipSequence = "membership_seq"
            case createdAtMs = "created_at_ms"
        }
    }

    let jetStream: JetStream
    let timeout: Duration

    public init(jetStream: JetStream, timeout: Duration = .seconds(5)) {
        self.jetStream = jetStream
        self.timeout = timeout
    }

    /// Publishes `image` for `partition`, then its manifest, then purges older chunks.
    public func write(image: [UInt8], partition: Int, partitionCount: Int, membershipSequence: UInt64, replica: String, dictionary: DictionaryReference?) throws -> Manifest {
        let previous = try? readManifest(partition: partition)
        let generation = membershipSequence
        let chunkCount = max(1, (image.count + Self.chunkBytes - 1) / Self.chunkBytes)
        for index in 0..<chunkCount {
            let start = index * Self.chunkBytes
            let chunk = Array(image[start..<min(image.count, start + Self.chunkBytes)])
            _ = try jetStream.publish(SnapshotSubjects.chunk(partition: partition, generation: generation, index: index), payload: chunk, timeout: timeout)
        }
        let manifest = Manifest(
            partition: partition, partitionCount: partitionCount, generation: generation,
            membershipSequence: membershipSequence, chunks: chunkCount, bytes: image.count,
            checksum: String(fnv1a64(image), radix: 16), createdAtMs: Int64(Date().timeIntervalSince1970 * 1000),
            replica: replica, dictionary: dictionary
        )
        _ = try jetStream.publish(SnapshotSubjects.manifest(partition: partition), payload: Array(try JSONEncoder().encode(manifest)), timeout: timeout)
        if let previous, previous.generation != generation {
            try jetStream.purge(stream: Self.stream, subject: SnapshotSubjects.generation(partition: partition, generation: previous.generation))
        }
        return manifest
    }

    /// The newest complete manifest of `partition`, or nil when there is none.
    public func readManifest(partition: Int) throws -> Manifest? {
        guard let message = try jetStream.lastMessage(stream: Self.stream, subject: SnapshotSubjects.manifest(partition: partition)) else { return nil }
        return try Self.decodeManifest(message.payload, partition: partition)
    }

    /// At most this many chunks per image (10 GB): a manifest is read before any chunk, so
    /// its counts are checked before they size a loop or an allocation.
    public static let maxChunks = 10_000

    /// Parses a manifest and checks that its numbers describe a possible image of `partition`.
    public static func decodeManifest(_ payload: [UInt8], partition: Int) throws(FanoutError) -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(payload))
        } catch {
            throw .snapshotCorrupt(partition: partition, reason: "manifest is not valid JSON: \(error)")
        }
        guard manifest.partition == partition else {
            throw .snapshotCorrupt(partition: partition, reason: "manifest is for partition \(manifest.partition)")
        }
        guard (1...maxChunks).contains(manifest.chunks), manifest.bytes >= 0, manifest.bytes <= manifest.chunks * chunkBytes else {
            throw .snapshotCorrupt(partition: partition, reason: "manifest claims \(manifest.chunks) chunks of \(manifest.bytes) bytes")
        }
        if let dictionary = manifest.dictionary {
            guard dictionarySlots.contains(dictionary.slot), UInt64(dictionary.lineage, radix: 16) != nil, UInt64(dictionary.replica, radix: 16) != nil,
                  (0...Int(UInt32.max)).contains(dictionary.users), dictionary.bytes >= 0 else {
                throw .snapshotCorrupt(partition: partition, reason: "manifest names an impossible dictionary (\(dictionary.replica).\(dictionary.slot), lineage \(dictionary.lineage), \(dictionary.users) users)")
            }
        }
        return manifest
    }

    // MARK: user dictionaries

    public func writeDictionarySegment(_ bytes: [UInt8], replica: String, slot: String, index: Int) throws {
        _ = try jetStream.publish(SnapshotSubjects.dictionarySegment(replica: replica, slot: slot, index: index), payload: bytes, timeout: timeout)
    }

    public func purgeDictionary(replica: String, slot: String) throws {
        try jetStream.purge(stream: Self.stream, subject: SnapshotSubjects.dictionarySlot(replica: replica, slot: slot))
    }

    /// The segments holding at least the first `reference.users` entries, checked against
    /// the lineage and each other (consecutive ids).
    public func readDictionary(_ reference: DictionaryReference) throws -> [UserDictionary.Segment] {
        guard let lineage = UInt64(reference.lineage, radix: 16) else { throw FanoutError.dictionaryUnusable(reference.source.description, reason: "lineage is not hex") }
        var segments: [UserDictionary.Segment] = []
        var covered = 0
        while covered < reference.users {
            guard segments.count < Self.maxChunks else { throw FanoutError.dictionaryUnusable(reference.source.description, reason: "more than \(Self.maxChunks) segments") }
            let subject = SnapshotSubjects.dictionarySegment(replica: reference.replica, slot: reference.slot, index: segments.count)
            guard let message = try jetStream.lastMessage(stream: Self.stream, subject: subject) else {
                throw FanoutError.dictionaryUnusable(reference.source.description, reason: "segment \(subject) is missing (\(covered) of \(reference.users) users found)")
            }
            let segment: UserDictionary.Segment
            do {
                segment = try UserDictionary.decode(message.payload, lineage: lineage, first: covered)
            } catch {
                throw FanoutError.dictionaryUnusable(reference.source.description, reason: "\(subject): \(error)")
            }
            guard segment.end > covered else { throw FanoutError.dictionaryUnusable(reference.source.description, reason: "\(subject) is empty") }
            covered = segment.end
            segments.append(segment)
        }
        return segments
    }

    /// The image a manifest describes, checked against its size and checksum.
    public func readImage(_ manifest: Manifest) throws -> [UInt8] {
        guard (1...Self.maxChunks).contains(manifest.chunks), (0...manifest.chunks * Self.chunkBytes).contains(manifest.bytes) else {
            throw FanoutError.snapshotCorrupt(partition: manifest.partition, reason: "manifest claims \(manifest.chunks) chunks of \(manifest.bytes) bytes")
        }
        var image: [UInt8] = []
        image.reserveCapacity(min(manifest.bytes, 64 * Self.chunkBytes))  // claims beyond that grow as chunks arrive
        for index in 0..<manifest.chunks {
            let subject = SnapshotSubjects.chunk(partition: manifest.partition, generation: manifest.generation, index: index)
            guard let chunk = try jetStream.lastMessage(stream: Self.stream, subject: subject) else {
                throw FanoutError.snapshotCorrupt(partition: manifest.partition, reason: "chunk \(subject) is missing")
            }
            image.append(contentsOf: chunk.payload)
            guard image.count <= manifest.bytes else {
                throw FanoutError.snapshotCorrupt(partition: manifest.partition, reason: "chunks hold more than the manifest's \(manifest.bytes) bytes")
            }
        }
        guard image.count == manifest.bytes else {
            throw FanoutError.snapshotCorrupt(partition: manifest.partition, reason: "\(image.count) bytes, manifest says \(manifest.bytes)")
        }
        guard String(fnv1a64(image), radix: 16) == manifest.checksum else {
            throw FanoutError.snapshotCorrupt(partition: manifest.partition, reason: "checksum mismatch")
        }
        return image
    }
}

/// FNV-1a 64: cheap, dependency-free integrity check of a snapshot image across chunks.
func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    return hash
}
