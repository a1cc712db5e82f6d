import Logging
import ServiceLifecycle

/// The notifier as a swift-service-lifecycle `Service`: `run()` starts the server, waits
/// for graceful shutdown (SIGTERM through the `ServiceGroup`), then drains it.
public struct NotifierService: Service {
    public let server: NotifierServer

    public init(configuration: NotifierConfiguration, logger: Logger = Logger(label: "switchboard.notifier"), metricsText: (@Sendable () -> [UInt8])? = nil) {
        server = NotifierServer(configuration: configuration, logger: logger, metricsText: metricsText)
    }

    public func run() async throws {
        try await server.start()
        // Returns on graceful shutdown; throws on cancellation. Drain in both cases.
        try? await gracefulShutdown()
        await server.drain()
    }
}
