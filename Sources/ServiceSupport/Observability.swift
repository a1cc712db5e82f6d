import Foundation
import Logging
import Metrics
import Prometheus
import Synchronization

/// Logging for the executables: one line per record on stderr, `key=value` metadata, so an
/// operator can grep by partition, instance or subject.
public enum LogSetup {
    public static func bootstrap(label: String, level: Logger.Level) {
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardError(label: name)
            handler.logLevel = level
            return handler
        }
    }
}

/// swift-metrics backed by a Prometheus registry, rendered on `/metrics`.
public enum MetricsSetup {
    private static let registry = Mutex<PrometheusCollectorRegistry?>(nil)

    /// Bootstraps the metrics system once per process and returns its registry.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        registry.withLock { existing in
            if let existing { return existing }
            let created = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: created))
            existing = created
            return created
        }
    }

    /// The Prometheus text exposition of `registry`.
    public static func render(_ registry: PrometheusCollectorRegistry) -> [UInt8] {
        registry.emitToBuffer()
    }
}
