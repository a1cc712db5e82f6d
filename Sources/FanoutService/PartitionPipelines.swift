import ServiceLifecycle

/// The owned partitions' event pipelines as one service, so that they start and wind down
/// side by side: a `ServiceGroup` shuts its services down one after another, and each
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

    /// Messages not yet consumed, per partition (from each pipeline's last fetch).
    func lag() -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: pipelines.map { ("\($0.partition)", $0.lag.load(ordering: .relaxed)) })
    }
}
