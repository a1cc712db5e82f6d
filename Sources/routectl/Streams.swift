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
            let jetStream = try connection.jetStream()
            let transforms = try jetStream.serverSupportsStreamSubjectTransforms()
            if !transforms {
                print("server without stream subject transforms (nats-server before 2.10): unpartitioned publishing needs deploy/nats/partition-mapping.conf")
            }
            for (name, result) in try definitions.apply(subjectTransforms: transforms, jetStream.applyStream(configJSON:)) {
                print("\(name) \(result)")
            }
        }
    }
}
