import Foundation
import SwitchboardContracts
import SwitchboardHarness
import Testing

@Suite struct StreamDefinitionTests {
    @Test func everyStreamFileLoadsAndNamesTheSubjectsTheContractsBuild() throws {
        let definitions = try StreamDefinitions(directory: RepositoryPaths.streams)
        #expect(definitions.partitionCount >= 1)
        #expect(Set(definitions.streams.map(\.name)) == Set(StreamNames.subjects.keys))
        for stream in definitions.streams {
            #expect(stream.subjects == StreamNames.subjects[stream.name], "\(stream.file)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(stream.json)) as? [String: Any])
            #expect(object["name"] as? String == stream.name)
        }
        let events = try #require(definitions.streams.first { $0.name == StreamNames.events })
        let built = Subjects.event(channel: "general", partitionCount: definitions.partitionCount)
        #expect(events.subjects.contains { subject(built, matches: $0) })
    }

    @Test func replicasOverrideEveryStreamAndAreBounded() throws {
        let definitions = try StreamDefinitions(directory: RepositoryPaths.streams, replicas: 3)
        for stream in definitions.streams {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(stream.json)) as? [String: Any])
            #expect(object["num_replicas"] as? Int == 3, "\(stream.name)")
        }
        #expect(throws: StreamDefinitionError.replicasOutOfRange(6)) { try StreamDefinitions(directory: RepositoryPaths.streams, replicas: 6) }
    }

    @Test func missingOrIncompleteDirectoriesAreNamedInTheError() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-no-streams-\(UUID().uuidString)").path
        #expect(throws: StreamDefinitionError.directoryMissing(missing)) { try StreamDefinitions(directory: missing) }

        let directory = try TemporaryDirectory(prefix: "switchboard-streams")
        let file = URL(fileURLWithPath: directory.path).appendingPathComponent("CHAT_EVENTS.json")
        try Data(#"{"name":"CHAT_EVENTS"}"#.utf8).write(to: file)
        #expect(throws: StreamDefinitionError.invalid(file: file.path, reason: "needs \"name\" and \"subjects\"")) {
            try StreamDefinitions(directory: directory.path)
        }
        try Data(#"{"name":"CHAT_EVENTS","subjects":["chat.events.*.*"]}"#.utf8).write(to: file)
        do {
            _ = try StreamDefinitions(directory: directory.path)
            Issue.record("a directory without \(StreamDefinitions.deploymentFile) loaded")
        } catch {
            guard case .invalid(let named, "missing") = error else { Issue.record("\(error)"); return }
            #expect(named.hasSuffix(StreamDefinitions.deploymentFile))
        }
    }
}
