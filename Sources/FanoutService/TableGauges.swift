import NIOPosix
import ServiceLifecycle

/// Keeps the table gauges (`switchboard_fanout_memberships`, `_channels`, `_instances`,
/// `_online_users`, `_table_bytes`) current: counts after every live membership batch, and
/// everything once a second. The byte count walks every channel's member set, so it is
/// computed on the blocking pool under the table's read lock, which planning shares.
struct TableGauges: Service {
    static let interval: Duration = .seconds(1)

    let state: RoutingState
    let metrics: FanoutMetrics

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await NIOThreadPool.singleton.runIfActive { refresh() }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
        }
    }

    /// Every gauge, table bytes included.
    func refresh() {
        let gauges = state.gauges(includingBytes: true)
        record(gauges)
        metrics.tableBytes.record(Double(gauges.tableBytes))
    }

    /// The counts alone (cheap: per partition and per instance, not per channel).
    func refreshCounts() {
        record(state.gauges(includingBytes: false))
    }

    private func record(_ gauges: RoutingState.Gauges) {
        metrics.memberships.record(Double(gauges.memberships))
        metrics.channels.record(Double(gauges.channels))
        metrics.onlineUsers.record(Double(gauges.onlineUsers))
        metrics.instances.record(Double(gauges.instances))
    }
}
