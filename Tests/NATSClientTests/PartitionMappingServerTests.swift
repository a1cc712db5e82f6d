import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

/// Server-side partitioning against the nats-server the fixtures run (scripts/test runs this
/// suite on Debian's 2.9.10 and on the pinned current release): a publisher that leaves the
/// partition out finds its message under the partition `Partitioner` computes.
@Suite("Partition mapping against a real nats-server")
struct PartitionMappingServerTests {
    /// FNV-1a vectors ("a" → partition 12, "foobar" → 8) and ids of every allowed character class.
    static let channels = ["a", "foobar", "general", "demo", "Team_7-ops", String(repeating: "z", count: 64)]
    static let partitionCount = 16

    @Test func theDeployedAccountMappingFilesUnpartitionedPublishesUnderTheClientsPartition() throws {
        #expect(Partitioner.partition(of: "a", count: Self.partitionCount) == 12)
        #expect(Partitioner.partition(of: "foobar", count: Self.partitionCount) == 8)
        let configuration = try TemporaryDirectory(prefix: "switchboard-test-mapping")
        defer { configuration.remove() }
        let mapping = RepositoryPaths.root.appendingPathComponent("deploy/nats/partition-mapping.conf")
        try FileManager.default.copyItem(at: mapping, to: configuration.url.appendingPathComponent("partition-mapping.conf"))
        let serverConf = configuration.url.appendingPathComponent("server.conf")
        try Data("include \"partition-mapping.conf\"\n".utf8).write(to: serverConf)

        let server = try NATSServerFixture(extraArguments: ["-c", serverConf.path])
        defer { server.stop() }
        let connection = try NATSConnection(options: .init(url: server.url, name: "mapping-tests", connectTimeout: .seconds(2)))
        defer { connection.close() }
        let jetStream = try connection.jetStream()
        // Without the streams' own transforms: the account mapping alone partitions.
        _ = try definitions().apply(subjectTransforms: false, jetStream.applyStream(configJSON:))
        try expectUnpartitionedPublishesLandUnderTheirPartition(jetStream)
    }

    @Test func streamDefinitionsPartitionOnServersWithTransformsAndStayPartitionedOnlyOnOlderOnes() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            let transforms = try jetStream.serverSupportsStreamSubjectTransforms()
            #expect(transforms == (try NATSServerBinary.hasStreamSubjectTransforms()), "detected from the JetStream account info")
            let definitions = try definitions()
            for (name, result) in try definitions.apply(subjectTransforms: transforms, jetStream.applyStream(configJSON:)) {
                #expect(result == .created, "\(name)")
            }
            // The server keeps what was sent: applying again changes nothing on either version.
            for (name, result) in try definitions.apply(subjectTransforms: transforms, jetStream.applyStream(configJSON:)) {
                #expect(result == .unchanged, "\(name)")
            }
            if transforms {
                try expectUnpartitionedPublishesLandUnderTheirPartition(jetStream)
            } else {
                // 2.9 would store an unpartitioned subject as is, where no fan-out reads it:
                // the stream does not take it, and the publisher hears so.
                #expect(throws: (any Error).self) {
                    try jetStream.publish(PartitionMapping.unpartitionedEvent(channel: "foobar"), payload: Array("lost".utf8), timeout: .seconds(2))
                }
            }
        }
    }

    private func definitions() throws -> StreamDefinitions {
        try StreamDefinitions(directory: URL(fileURLWithPath: RepositoryPaths.streams).resolvingSymlinksInPath().path)
    }

    private func expectUnpartitionedPublishesLandUnderTheirPartition(_ jetStream: JetStream) throws {
        for channel in Self.channels {
            let event = Array("event in \(channel)".utf8)
            let ack = try jetStream.publish(PartitionMapping.unpartitionedEvent(channel: channel), payload: event)
            #expect(ack.stream == StreamNames.events)
            let partitioned = Subjects.event(channel: channel, partitionCount: Self.partitionCount)
            let stored = try jetStream.lastMessage(stream: StreamNames.events, subject: partitioned)
            #expect(stored?.subject == partitioned, "\(channel)")
            #expect(stored?.payload == event, "\(channel)")

            let fact = Array("alice joined \(channel)".utf8)
            _ = try jetStream.publish(PartitionMapping.unpartitionedMembership(channel: channel, user: "alice"), payload: fact)
            let member = Subjects.membership(channel: channel, user: "alice", partitionCount: Self.partitionCount)
            let storedFact = try jetStream.lastMessage(stream: StreamNames.membership, subject: member)
            #expect(storedFact?.payload == fact, "\(channel)")
        }
        let state = try jetStream.streamState(StreamNames.events)
        #expect(state.messages == UInt64(Self.channels.count), "nothing stored under an unpartitioned subject")
    }
}
