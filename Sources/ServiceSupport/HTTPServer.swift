import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// The operations endpoint of a service: `/healthz` (liveness), `/readyz` (readiness) and
/// `/metrics` (Prometheus text), as a `Service` that stops with the group.
public struct HTTPServer: Service {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var liveness: @Sendable () -> Bool
        public var readiness: @Sendable () -> Bool
        public var metrics: PrometheusCollectorRegistry

        public init(host: String, port: Int, liveness: @escaping @Sendable () -> Bool, readiness: @escaping @Sendable () -> Bool, metrics: PrometheusCollectorRegistry) {
            self.host = host
            self.port = port
            self.liveness = liveness
            self.readiness = readiness
            self.metrics = metrics
        }
    }

    let configuration: Configuration
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let configuration = self.configuration
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(OperationsHandler(configuration: configuration))
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        logger.info("operations endpoint listening", metadata: ["address": "\(configuration.host):\(configuration.port)"])
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

/// Answers one small GET per request on the operations endpoint.
final class OperationsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let endpoints: OperationsEndpoints

    init(configuration: HTTPServer.Configuration) {
        let registry = configuration.metrics
        endpoints = OperationsEndpoints(
            liveness: configuration.liveness, readiness: configuration.readiness, metrics: { MetricsSetup.render(registry) }
        )
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let answer = endpoints.response(method: head.method, path: path)
            ?? HTTPAnswer(status: .notFound, text: "not found: use /healthz, /readyz or /metrics\n")
        answer.write(version: head.version, context: context)
    }
}
