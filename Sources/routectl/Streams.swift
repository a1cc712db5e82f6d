import ArgumentParser
import Foundation
import NATSClient
import SwitchboardContracts

struct Streams: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage the JetStream streams.", subcommands: [Apply.self])

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create or update the streams defined in streams/*.json (idempotent).")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Folder with the stream definitions.") var dir = "streams"
        @Option(help: "Replicas of every stream, overriding the files (3 on a three-node NATS cluster).") var replicas: Int?

        func run() throws {
            let definitions: StreamDefinitions
            do {
                definitions = try StreamDefinitions(directory: dir, replicas: replicas)
            } catch {
                throw RoutectlFailure(code: 1, message: "\(error)")
            }
            let connection = try connection.connect()
            defer { connection.close() }
            for (name, result) in try definitions.apply(connection.jetStream().applyStream(configJSON:)) {
                print("\(name) \(result)")
            }
        }
    }
}
