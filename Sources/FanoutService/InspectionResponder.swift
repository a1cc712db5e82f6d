import Foundation
import Logging
import NATSClient
import RoutingCore
import SwitchboardContracts
import ServiceLifecycle
import SwitchboardProto

/// Answers `routing.inspect.*` requests with JSON (see `Inspection` for the shapes).
/// Every replica answers; `routectl` merges the replies of all replicas. Subscribed during
/// warm-up (so it answers as soon as the replica is ready); `run()` holds the subscriptions
/// until graceful shutdown.
final class InspectionResponder: Service {
    private let connection: NATSConnection
    private let state: RoutingState
    private let replica: @Sendable () -> Inspection.Replica
    private let lag: @Sendable () -> [String: UInt64]
    private let logger: Logger
    private let subscriptions = Subscriptions()

    init(connection: NATSConnection, state: RoutingState, replica: @escaping @Sendable () -> Inspection.Replica, lag: @escaping @Sendable () -> [String: UInt64], logger: Logger) {
        self.connection = connection
        self.state = state
        self.replica = replica
        self.lag = lag
        self.logger = logger
    }

    func subscribe() throws {
        let routes: [(String, @Sendable (InspectionResponder, String) throws -> any Encodable)] = [
            (Inspection.statsSubject, { responder, _ in responder.state.stats(replica: responder.replica(), lag: responder.lag()) }),
            (Inspection.userSubject, { responder, id in
                try responder.requireValid(id, "user")
                return responder.state.inspectUser(id, replica: responder.replica())
            }),
            (Inspection.channelSubject, { responder, id in
                try responder.requireValid(id, "channel")
                return responder.state.inspectChannel(id, replica: responder.replica())
            }),
            (Inspection.instancesSubject, { responder, _ in responder.state.inspectInstances(replica: responder.replica()) }),
        ]
        for (subject, answer) in routes {
            let subscription = try connection.subscribe(subject) { [weak self] message in
                guard let self, let reply = message.reply else { return }
                let body: any Encodable
                do {
                    body = try answer(self, String(decoding: message.payload, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
                } catch {
                    body = Inspection.Failure(replica: self.replica(), error: "\(error)")
                }
                do {
                    try self.connection.publish(reply, payload: Array(try JSONEncoder().encode(body)))
                } catch {
                    self.logger.warning("inspection reply failed", metadata: ["subject": "\(subject)", "error": "\(error)"])
                }
            }
            subscriptions.add(subscription)
        }
    }

    func run() async {
        await subscriptions.holdUntilGracefulShutdown()
    }

    private struct InvalidID: Error, CustomStringConvertible {
        var description: String
    }

    private func requireValid(_ id: String, _ kind: String) throws {
        guard Identifier.isValid(id) else {
            throw InvalidID(description: "invalid \(kind) id '\(id.prefix(80))': 1-64 characters of A-Z a-z 0-9 _ -")
        }
    }
}
