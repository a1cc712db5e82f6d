/// How a set of partitions is written for people: runs of consecutive partitions as ranges,
/// joined by commas ("0-3,7"), the form `--partitions` reads and `routectl` prints.
public enum PartitionRanges {
    /// `partitions` (in any order) as "0-3,7"; "" for none.
    public static func describe(_ partitions: [Int]) -> String {
        let sorted = partitions.sorted()
        var ranges: [String] = []
        var start = 0
        while start < sorted.count {
            var end = start
            while end + 1 < sorted.count && sorted[end + 1] == sorted[end] + 1 { end += 1 }
            ranges.append(start == end ? "\(sorted[start])" : "\(sorted[start])-\(sorted[end])")
            start = end + 1
        }
        return ranges.joined(separator: ",")
    }
}
