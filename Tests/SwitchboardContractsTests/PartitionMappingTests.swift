import Foundation
import SwitchboardContracts
import SwitchboardHarness
import Testing

@Suite struct PartitionMappingTests {
    @Test func deployedMappingFileIsTheOneGeneratedForTheDeploymentsPartitionCount() throws {
        let definitions = try StreamDefinitions(directory: RepositoryPaths.streams)
        let file = RepositoryPaths.root.appendingPathComponent("deploy/nats/partition-mapping.conf")
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text == PartitionMapping.serverConfiguration(partitionCount: definitions.partitionCount))
    }

    @Test func eventAndMembershipStreamsCarryTheMappingAsTransformAndDropItForOlderServers() throws {
        let definitions = try StreamDefinitions(directory: RepositoryPaths.streams)
        let rules = PartitionMapping.rules(partitionCount: definitions.partitionCount)
        let transformed = definitions.streams.filter { $0.subjectTransform != nil }
        #expect(Set(transformed.map(\.name)) == [StreamNames.events, StreamNames.membership])
        for stream in transformed {
            let rule = try #require(stream.subjectTransform)
            #expect(rules.contains(rule))
            #expect(stream.subjects.contains(rule.source), "the stream must also accept the unpartitioned form")
            let withTransform = try object(stream.applicableJSON(subjectTransforms: true))
            #expect((withTransform["subject_transform"] as? [String: String]) == ["src": rule.source, "dest": rule.destination])
            let plain = try object(stream.applicableJSON(subjectTransforms: false))
            #expect(plain["subject_transform"] == nil)
            #expect(plain["subjects"] as? [String] == stream.subjects.filter { $0 != rule.source })
        }
        let untouched = try #require(definitions.streams.first { $0.name == StreamNames.deadLetters })
        #expect(untouched.applicableJSON(subjectTransforms: false) == untouched.applicableJSON(subjectTransforms: true))
    }

    @Test func aTransformForAnotherPartitionCountIsRefused() throws {
        let directory = try TemporaryDirectory(prefix: "switchboard-streams")
        defer { directory.remove() }
        let events = URL(fileURLWithPath: directory.path).appendingPathComponent("CHAT_EVENTS.json")
        let rule = PartitionMapping.rules(partitionCount: 8)[0]
        try Data(#"{"name":"CHAT_EVENTS","subjects":["chat.events.*.*","\#(rule.source)"],"subject_transform":{"src":"\#(rule.source)","dest":"\#(rule.destination)"}}"#.utf8).write(to: events)
        try Data(#"{"partition_count":16}"#.utf8).write(to: URL(fileURLWithPath: directory.path).appendingPathComponent(StreamDefinitions.deploymentFile))
        #expect(throws: StreamDefinitionError.transformDisagrees(file: events.path, partitionCount: 16)) {
            try StreamDefinitions(directory: directory.path)
        }
    }

    @Test func unpartitionedSubjectsDropOnlyThePartitionToken() {
        #expect(PartitionMapping.unpartitionedEvent(channel: "foobar") == "chat.events.foobar")
        #expect(PartitionMapping.unpartitionedMembership(channel: "foobar", user: "alice") == "chat.membership.foobar.alice")
    }

    private func object(_ json: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
    }
}
