/// The owned partitions' channel tables, indexed by partition number: an array rather than a
/// dictionary, because a replay reaches a table several times per membership and a dictionary
/// lookup hashes the key each time (and reading an optional out of it copies the table's
/// references). Partitions that are not owned hold nil.
public struct PartitionTables: Sendable {
    private var tables: [ChannelTable?]
    /// Which partitions are owned: fixed at creation, and a check that copies no table.
    private let owned: [Bool]

    init(owned partitions: [Int], count: Int) {
        tables = Array(repeating: nil, count: count)
        var owned = Array(repeating: false, count: count)
        for partition in partitions {
            tables[partition] = ChannelTable()
            owned[partition] = true
        }
        self.owned = owned
    }

    /// nil for a partition that is not owned (or out of range). Mutating goes through in place,
    /// so `tables[p]!.join(…)` changes the stored table without copying it. Only owned partitions
    /// can be changed, and never to nil.
    public subscript(partition: Int) -> ChannelTable? {
        get { tables.indices.contains(partition) ? tables[partition] : nil }
        _modify {
            precondition(owns(partition), "partition \(partition) is not owned")
            yield &tables[partition]
        }
    }

    public func owns(_ partition: Int) -> Bool { owned.indices.contains(partition) && owned[partition] }

    /// Runs `body` on an owned partition's table in place.
    @inline(__always)
    mutating func modify<R>(_ partition: Int, _ body: (inout ChannelTable) -> R) -> R {
        body(&tables[partition]!)
    }

    /// Owned partition numbers, ascending.
    public var keys: [Int] { owned.indices.filter { owned[$0] } }

    /// The owned partitions' tables, by ascending partition.
    public var values: [ChannelTable] { tables.compactMap { $0 } }
}
