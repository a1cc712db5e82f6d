import ServiceLifecycle

/// The owned partitions' event pipelines (each serving a group of partitions on one thread)
/// as one service, so that they start and wind down side by side: a `ServiceGroup` shuts its services down one after another, and each
/// pipeline may take a fetch timeout to notice. Graceful shutdown reaches every pipeline at
/// once through the task group (child tasks share the service's shutdown handlers).
struct PartitionPipelines: Service {
    let pipelines: [EventPipeline]

    func run() async {
        await withDiscardingTaskGroup { group in
            for pipeline in pipelines {
                group.addTask { await pipeline.run() }
            }
        }
    }

    /// Messages not yet consumed, per partition (from each pipeline's last delivery).
    func lag() -> [String: UInt64] {
        var lags: [String: UInt64] = [:]
        for pipeline in pipelines {
            for (partition, lag) in pipeline.lag() { lags["\(partition)"] = lag }
        }
        return lags
    }

    /// Deals `partitions` out among `threads` pipelines (partition i to pipeline i mod threads).
    static func groups(_ partitions: [Int], threads: Int) -> [[Int]] {
        let count = max(1, min(threads, partitions.count))
        return (0..<count).map { group in partitions.enumerated().filter { $0.offset % count == group }.map(\.element) }
    }
}
