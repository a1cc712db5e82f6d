import Logging
import RoutingCore

/// Loads every owned partition's snapshot at warm-up: the manifests first, then each user
/// dictionary they name (interned once, however many images share it), then the images side
/// by side on the blocking pool (each decodes and builds its own partition). A partition whose
/// manifest, dictionary or image is unusable is replayed from the start instead.
struct SnapshotLoader: Sendable {
    let store: SnapshotStore
    let state: RoutingState
    let partitions: [Int]
    let partitionCount: Int
    let replicaID: String
    let logger: Logger

    /// Where this process writes its own dictionary, decided from what it found.
    struct WritePlan: Sendable {
        var slot: String
        /// Partitions whose manifests name that slot's previous lineage.
        var rewrite: Set<Int>
    }

    struct Outcome: Sendable {
        /// Partition → the first membership sequence to replay (0: everything).
        var starts: [Int: UInt64]
        var plan: WritePlan
    }

    func load() async -> Outcome {
        let manifests = await readManifests()
        let plan = Self.plan(manifests: manifests, replica: SnapshotStore.replicaToken(replicaID))
        var loaded: [SnapshotStore.DictionaryReference.Source: Result<[UInt32], any Error>] = [:]
        for (source, users) in Self.neededDictionaries(manifests) {
            loaded[source] = await loadDictionary(source, users: users)
        }
        let dictionaries = loaded
        let starts = await withTaskGroup(of: (Int, UInt64).self) { group in
            for partition in partitions {
                group.addTask { [self] in
                    let manifest = manifests[partition] ?? .success(nil)
                    let dictionary = (try? manifest.get()).flatMap { $0.dictionary }.flatMap { dictionaries[$0.source] }
                    let start = try? await blocking { [self] in loadImage(partition: partition, manifest: manifest, dictionary: dictionary) }
                    return (partition, start ?? 0)
                }
            }
            var starts: [Int: UInt64] = [:]
            for await (partition, start) in group { starts[partition] = start }
            return starts
        }
        return Outcome(starts: starts, plan: plan)
    }

    private func readManifests() async -> [Int: Result<SnapshotStore.Manifest?, any Error>] {
        await withTaskGroup(of: (Int, Result<SnapshotStore.Manifest?, any Error>).self) { group in
            for partition in partitions {
                group.addTask { [store] in
                    do { return (partition, .success(try await blocking { try store.readManifest(partition: partition) })) } catch { return (partition, .failure(error)) }
                }
            }
            var manifests: [Int: Result<SnapshotStore.Manifest?, any Error>] = [:]
            for await (partition, manifest) in group { manifests[partition] = manifest }
            return manifests
        }
    }

    /// Each dictionary the manifests name, with the most entries any of them needs.
    static func neededDictionaries(_ manifests: [Int: Result<SnapshotStore.Manifest?, any Error>]) -> [SnapshotStore.DictionaryReference.Source: Int] {
        var needed: [SnapshotStore.DictionaryReference.Source: Int] = [:]
        for case .success(let manifest?) in manifests.values {
            guard let reference = manifest.dictionary else { continue }
            needed[reference.source] = max(needed[reference.source] ?? 0, reference.users)
        }
        return needed
    }

    /// The slot of this replica that fewer loaded manifests name (the first when tied): a
    /// new lineage overwrites it, so the partitions naming it are rewritten first.
    static func plan(manifests: [Int: Result<SnapshotStore.Manifest?, any Error>], replica: String) -> WritePlan {
        var naming: [String: Set<Int>] = [:]
        for (partition, result) in manifests {
            guard case .success(let manifest?) = result, let reference = manifest.dictionary, reference.replica == replica else { continue }
            naming[reference.slot, default: []].insert(partition)
        }
        let slot = SnapshotStore.dictionarySlots.min { (naming[$0]?.count ?? 0) < (naming[$1]?.count ?? 0) }!
        return WritePlan(slot: slot, rewrite: naming[slot] ?? [])
    }

    private func loadDictionary(_ source: SnapshotStore.DictionaryReference.Source, users: Int) async -> Result<[UInt32], any Error> {
        let started = ContinuousClock.now
        let reference = SnapshotStore.DictionaryReference(replica: source.replica, slot: source.slot, lineage: source.lineage, users: users, bytes: 0)
        do {
            let (ids, segments) = try await blocking { [store, state] in
                let segments = try store.readDictionary(reference)
                return (state.internDictionary(segments), segments.count)
            }
            logger.info("snapshot dictionary loaded", metadata: [
                "dictionary": "\(source)", "users": "\(ids.count)", "segments": "\(segments)", "ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
            return .success(ids)
        } catch {
            logger.warning("snapshot dictionary not used; its partitions replay from the start", metadata: ["dictionary": "\(source)", "reason": "\(error)"])
            return .failure(error)
        }
    }

    /// The sequence to replay membership from: one past the snapshot's, or 0 (everything).
    private func loadImage(partition: Int, manifest: Result<SnapshotStore.Manifest?, any Error>, dictionary: Result<[UInt32], any Error>?) -> UInt64 {
        do {
            guard let manifest = try manifest.get() else { return 0 }
            guard manifest.partitionCount == partitionCount else {
                throw FanoutError.snapshotCorrupt(partition: partition, reason: "written for \(manifest.partitionCount) partitions")
            }
            let ids = try dictionary?.get()
            let image = try store.readImage(manifest)
            try state.load(image: image, partition: partition, sequence: manifest.membershipSequence, dictionary: ids)
            logger.info("snapshot loaded", metadata: ["partition": "\(partition)", "membership_seq": "\(manifest.membershipSequence)", "bytes": "\(image.count)"])
            return manifest.membershipSequence + 1
        } catch {
            logger.warning("snapshot not used; replaying the partition from the start", metadata: ["partition": "\(partition)", "reason": "\(error)"])
            state.resetPartition(partition)
            return 0
        }
    }
}
