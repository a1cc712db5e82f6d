import Foundation
@testable import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import Testing

@Suite("JetStream against a real nats-server")
struct JetStreamTests {
    @Test func applyStreamCreatesThenLeavesUnchangedThenUpdatesWhenALimitChanges() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            let definitions = try streamDefinitionFiles()
            #expect(definitions.map(\.name).contains(StreamNames.events))
            for definition in definitions {
                #expect(try jetStream.applyStream(configJSON: definition.json) == .created, "\(definition.name)")
            }
            for definition in definitions {
                #expect(try jetStream.applyStream(configJSON: definition.json) == .unchanged, "\(definition.name)")
            }
            let changed = try streamDefinition(StreamNames.events, changing: ["max_msg_size": 2_097_152])
            #expect(try jetStream.applyStream(configJSON: changed) == .updated)
            #expect(try jetStream.applyStream(configJSON: changed) == .unchanged)
            #expect(try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events)) == .updated)
            #expect(JetStream.StreamApplyResult.created.description == "created")
        }
    }

    @Test func applyStreamRejectsBadConfigWithTypedErrors() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            #expect(throws: NATSError.self) {
                do {
                    _ = try jetStream.applyStream(configJSON: bytes("{not json"))
                } catch let error as NATSError {
                    guard case .invalidArgument = error else { Issue.record("expected .invalidArgument, got \(error)"); return }
                    throw error
                }
            }
            #expect(throws: NATSError.invalidArgument("stream config has no \"name\"")) {
                _ = try jetStream.applyStream(configJSON: bytes(#"{"subjects":["a.b"]}"#))
            }
            #expect(throws: NATSError.self) {
                _ = try jetStream.applyStream(configJSON: bytes(#"{"name":"bad.name"}"#))
            }
            // Valid JSON the server refuses: the JetStream API's error comes back typed.
            do {
                _ = try jetStream.applyStream(configJSON: bytes(#"{"name":"BAD","subjects":["bad.>"],"retention":"sometimes"}"#))
                Issue.record("the server accepted an invalid retention")
            } catch let error as NATSError {
                guard case .jetStream(let operation, let code, let description) = error else {
                    Issue.record("expected .jetStream, got \(error)")
                    return
                }
                #expect(operation.contains("BAD"))
                #expect(code > 0)
                #expect(!description.isEmpty)
            }
        }
    }

    @Test func publishWithMessageIDDeduplicatesInsideTheWindow() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))

            let first = try jetStream.publish("chat.events.1.general", payload: bytes("a"), msgID: "event-1")
            #expect(first == JetStream.PublishAck(stream: StreamNames.events, sequence: 1, duplicate: false))
            let again = try jetStream.publish("chat.events.1.general", payload: bytes("a"), msgID: "event-1")
            #expect(again.duplicate)
            #expect(again.sequence == 1)
            let other = try jetStream.publish("chat.events.1.general", payload: bytes("b"), msgID: "event-2")
            #expect(other.sequence == 2 && !other.duplicate)
            #expect(try jetStream.streamState(StreamNames.events).messages == 2)
        }
    }

    @Test func publishToSubjectWithoutStreamFailsClearly() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream(timeout: .seconds(1))
            #expect(throws: NATSError.noResponders(subject: "no.stream.here")) {
                _ = try jetStream.publish("no.stream.here", payload: [1])
            }
            #expect(throws: NATSError.self) { _ = try jetStream.streamState("MISSING") }
        }
    }

    @Test func asyncPublishStoresEverythingAndReportsFailures() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream(maxPendingAsyncPublishes: 64)
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
            for index in 0..<500 {
                try jetStream.publishAsync("chat.events.\(index % 16).load", payload: bytes("\(index)"), msgID: "load-\(index)")
            }
            try jetStream.publishAsyncComplete(timeout: .seconds(5))
            #expect(try jetStream.streamState(StreamNames.events).messages == 500)

            try jetStream.publishAsync("no.stream.here", payload: [1])
            #expect(throws: NATSError.self) { try jetStream.publishAsyncComplete(timeout: .seconds(5)) }
            // Failures are reported once.
            try jetStream.publishAsyncComplete(timeout: .seconds(1))
        }
    }

    @Test func pullConsumerFetchesAcksNaksAndTerminates() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
            for index in 1...5 {
                _ = try jetStream.publish("chat.events.2.room", payload: bytes("event \(index)"), msgID: "e\(index)")
            }
            _ = try jetStream.publish("chat.events.3.other", payload: bytes("other partition"))
            let subscription = try jetStream.pullSubscribe(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 2), filterSubject: Subjects.events(partition: 2))
            defer { subscription.unsubscribe() }

            let batch = try subscription.fetch(batch: 10, timeout: .seconds(2))
            #expect(batch.map { text($0.payload) } == (1...5).map { "event \($0)" })
            #expect(batch.map(\.metadata.streamSequence) == [1, 2, 3, 4, 5])
            #expect(batch.allSatisfy { $0.metadata.numDelivered == 1 && $0.metadata.stream == StreamNames.events && $0.metadata.consumer == ConsumerNames.fanout(partition: 2) })
            #expect(batch.last?.metadata.numPending == 0)
            #expect(batch.first?.headers["Nats-Msg-Id"] == "e1")
            #expect(batch[0].metadata.timestampNs > 0)

            try batch[0].ack()
            try batch[1].ackSync(timeout: .seconds(2))
            try batch[2].inProgress()
            try batch[2].ack()
            try batch[3].nak()
            try batch[4].term()

            let redelivered = try subscription.fetch(batch: 10, timeout: .seconds(2))
            #expect(redelivered.map(\.metadata.streamSequence) == [4])
            #expect(redelivered.first?.metadata.numDelivered == 2)
            try redelivered.first?.ackSync(timeout: .seconds(2))

            // Everything answered: the next fetch is empty, and returns within its timeout.
            let started = ContinuousClock.now
            let empty = try subscription.fetch(batch: 10, timeout: .milliseconds(300))
            #expect(empty.isEmpty)
            #expect(ContinuousClock.now - started < .seconds(2))

            // The durable outlives the subscription: a new one resumes after the ack floor.
            subscription.unsubscribe()
            subscription.unsubscribe()
            _ = try jetStream.publish("chat.events.2.room", payload: bytes("event 6"))
            let resumed = try jetStream.pullSubscribe(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 2), filterSubject: Subjects.events(partition: 2))
            let next = try resumed.fetch(batch: 10, timeout: .seconds(2))
            #expect(next.map { text($0.payload) } == ["event 6"])
            #expect(next.first?.metadata.streamSequence == 7)
            #expect(next.first?.metadata.consumerSequence == 7)  // 5 first deliveries + 1 redelivery before it
            try next.first?.ack()
            resumed.unsubscribe()
            try jetStream.deleteConsumer(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 2))
            #expect(throws: NATSError.self) { try jetStream.deleteConsumer(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 2)) }
        }
    }

    @Test func ackAllAcksEveryEarlierMessageAndSwitchingPolicyKeepsThePosition() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
            for index in 1...6 { _ = try jetStream.publish("chat.events.2.room", payload: bytes("event \(index)")) }
            // An explicit-ack consumer acks the first two, then the policy changes to ack-all.
            let explicit = try jetStream.pullSubscribe(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 2), filterSubject: Subjects.events(partition: 2), ackWait: .seconds(1))
            let first = try explicit.fetch(batch: 2, timeout: .seconds(2))
            for message in first { try message.ackSync(timeout: .seconds(2)) }
            explicit.unsubscribe()

            let all = try jetStream.pullSubscribe(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 2), filterSubject: Subjects.events(partition: 2), ackWait: .seconds(1), ackPolicy: .all)
            defer { all.unsubscribe() }
            let rest = try all.fetch(batch: 10, timeout: .seconds(2))
            #expect(rest.map(\.metadata.streamSequence) == [3, 4, 5, 6], "resumes past the ack floor")
            try rest[2].ackSync(timeout: .seconds(2))  // acks 3, 4 and 5
            Thread.sleep(forTimeInterval: 1.5)      // past the ack wait: only 6 comes back
            let again = try all.fetch(batch: 10, timeout: .seconds(3))
            #expect(again.map(\.metadata.streamSequence) == [6])
        }
    }

    @Test func nakWithDelayRedeliversAfterTheDelay() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.events))
            _ = try jetStream.publish("chat.events.5.room", payload: bytes("retry me"))
            let subscription = try jetStream.pullSubscribe(stream: StreamNames.events, durable: ConsumerNames.fanout(partition: 5), filterSubject: Subjects.events(partition: 5))
            let first = try #require(try subscription.fetch(batch: 1, timeout: .seconds(2)).first)
            try first.nak(delay: .milliseconds(300))
            #expect(try subscription.fetch(batch: 1, timeout: .milliseconds(100)).isEmpty)
            let again = try #require(try subscription.fetch(batch: 1, timeout: .seconds(2)).first)
            #expect(again.metadata.numDelivered == 2)
            try again.ack()
        }
    }

    @Test func orderedConsumerReplaysFromStartSequenceInOrderWithPendingCount() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.membership))
            var partitionSevenSequences: [UInt64] = []
            for index in 0..<20 {
                let partition = index % 2 == 0 ? 7 : 8
                let ack = try jetStream.publish("chat.membership.\(partition).channel.user\(index)", payload: bytes("\(index)"))
                if partition == 7 { partitionSevenSequences.append(ack.sequence) }
            }

            let all = try jetStream.orderedConsumer(stream: StreamNames.membership, filterSubject: "chat.membership.7.*.*", startSequence: 0)
            defer { all.close() }
            var replayed: [UInt64] = []
            while let message = try all.next(timeout: .seconds(2)) {
                replayed.append(message.metadata.streamSequence)
                #expect(message.metadata.numPending == UInt64(partitionSevenSequences.count - replayed.count))
                if message.metadata.numPending == 0 { break }
            }
            #expect(replayed == partitionSevenSequences)

            let start = partitionSevenSequences[6]
            let tail = try jetStream.orderedConsumer(stream: StreamNames.membership, filterSubject: "chat.membership.7.*.*", startSequence: start)
            defer { tail.close() }
            var tailSequences: [UInt64] = []
            var tailPayloads: [String] = []
            while let message = try tail.next(timeout: .seconds(2)) {
                tailSequences.append(message.metadata.streamSequence)
                tailPayloads.append(text(message.payload))
                if message.metadata.numPending == 0 { break }
            }
            #expect(tailSequences == Array(partitionSevenSequences[6...]))
            #expect(tailPayloads == ["12", "14", "16", "18"])
            #expect(try tail.next(timeout: .milliseconds(100)) == nil)

            // New messages keep arriving on the same consumer, in order.
            _ = try jetStream.publish("chat.membership.7.channel.late", payload: bytes("late"))
            let late = try #require(try tail.next(timeout: .seconds(2)))
            #expect(text(late.payload) == "late")
            #expect(late.subject == "chat.membership.7.channel.late")
        }
    }

    /// `>` reads the whole stream as an unfiltered consumer would (nats-server 2.9 counts a
    /// wildcard filter's pending messages subject by subject, even the stream's own subject);
    /// `read` lends messages in batches without copying.
    @Test func orderedConsumerOverTheWholeStreamLendsBatchesInOrder() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.membership))
            var published: [(sequence: UInt64, subject: String)] = []
            for index in 0..<300 {
                let subject = "chat.membership.\(index % 16).channel.user\(index)"
                published.append((try jetStream.publish(subject, payload: bytes("\(index)")).sequence, subject))
            }

            let consumer = try jetStream.orderedConsumer(stream: StreamNames.membership, filterSubject: ">", startSequence: published[100].sequence)
            defer { consumer.close() }
            var read: [(sequence: UInt64, subject: String, payload: String, pending: UInt64)] = []
            var batches = 0
            while read.count < 200 {
                let count = try consumer.read(limit: 64, timeout: .seconds(2)) { message in
                    read.append((message.streamSequence, String(decoding: message.subject, as: UTF8.self),
                                 String(decoding: message.payload, as: UTF8.self), message.numPending))
                }
                #expect(count > 0 && count <= 64)
                if count == 0 { break }
                batches += 1
            }
            #expect(read.map(\.sequence) == published[100...].map(\.sequence))
            #expect(read.map(\.subject) == published[100...].map(\.subject))
            #expect(read.map(\.payload) == (100..<300).map { "\($0)" })
            #expect(read.map(\.pending) == (0..<200).map { UInt64(199 - $0) })
            #expect(batches >= 4)  // the limit holds even when more are queued
            #expect(try consumer.read(limit: 64, timeout: .milliseconds(100)) { _ in } == 0)
        }
    }

    @Test func nextMessageReadsTheFirstMatchAtOrAfterASequenceWithItsHeadersAndTime() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: bytes(#"{"name": "NEXT_TEST", "subjects": ["next.>"], "storage": "memory"}"#))
            let before = Int64(Date().timeIntervalSince1970 * 1e9)
            var sequences: [UInt64] = []
            for index in 0..<6 {
                var headers = NATSHeaders()
                headers["Test-Index"] = "\(index)"
                sequences.append(try jetStream.publish("next.\(index % 2).x\(index)", payload: bytes("m\(index)"), headers: headers).sequence)
            }
            let after = Int64(Date().timeIntervalSince1970 * 1e9)
            let filter = "next.1.*"
            // Partition 1 holds messages 1, 3 and 5 (0-based index); from the second one on, the next is 3.
            let found = try #require(try jetStream.nextMessage(stream: "NEXT_TEST", matching: filter, atOrAfter: sequences[2]))
            #expect(found.sequence == sequences[3])
            #expect(text(found.payload) == "m3")
            #expect(found.subject == "next.1.x3")
            #expect(found.headers["Test-Index"] == "3")
            #expect(found.timestampNs >= before - 1_000_000_000 && found.timestampNs <= after + 1_000_000_000, "stored at \(found.timestampNs), published between \(before) and \(after)")
            #expect(try jetStream.nextMessage(stream: "NEXT_TEST", matching: filter, atOrAfter: sequences[5] + 1) == nil)
            #expect(try jetStream.nextMessage(stream: "NEXT_TEST", matching: filter, atOrAfter: 0)?.sequence == sequences[1])
        }
    }

    @Test func storedTimesAndHeaderBlocksDecodeAsTheServerWritesThem() {
        #expect(RFC3339.nanoseconds("1970-01-01T00:00:00Z") == 0)
        #expect(RFC3339.nanoseconds("2026-12-01T21:14:50.884355474Z") == 1_796_159_690_884_355_474)
        #expect(RFC3339.nanoseconds("2000-02-29T12:00:00.5Z") == 951_825_600_500_000_000)
        for bad in ["", "2026-12-01 21:14:50Z", "2026-12-01T21:14:50", "2026-13-01T00:00:00Z", "2026-12-01T21:14:50.Z", "2026-12-01T21:14:50.1234567890Z"] {
            #expect(RFC3339.nanoseconds(bad) == nil, "\(bad)")
        }
        let headers = NATSHeaders(block: Array("NATS/1.0\r\nA: 1\r\nB:two words\r\nA: 3\r\nnocolon\r\n\r\n".utf8))
        #expect(headers.values(for: "A") == ["1", "3"])
        #expect(headers["B"] == "two words")
        #expect(headers.fields.count == 3)
    }

    @Test func lastMessageReturnsTheNewestPerSubjectAndNilForNone() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.snapshots))
            _ = try jetStream.publish(SnapshotSubjects.manifest(partition: 3), payload: bytes("old"))
            var headers = NATSHeaders()
            headers["Test-Generation"] = "2"
            let newest = try jetStream.publish(SnapshotSubjects.manifest(partition: 3), payload: bytes("new"), headers: headers)
            _ = try jetStream.publish(SnapshotSubjects.manifest(partition: 4), payload: bytes("other"))

            let message = try #require(try jetStream.lastMessage(stream: StreamNames.snapshots, subject: SnapshotSubjects.manifest(partition: 3)))
            #expect(text(message.payload) == "new")
            #expect(message.sequence == newest.sequence)
            #expect(message.subject == SnapshotSubjects.manifest(partition: 3))
            #expect(message.headers["Test-Generation"] == "2")
            #expect(try jetStream.lastMessage(stream: StreamNames.snapshots, subject: SnapshotSubjects.manifest(partition: 9)) == nil)
            do {
                _ = try jetStream.lastMessage(stream: "NO_SUCH_STREAM", subject: "x")
                Issue.record("read from a missing stream")
            } catch let error as NATSError {
                guard case .jetStream(_, let code, _) = error else { Issue.record("expected .jetStream, got \(error)"); return }
                #expect(code == 10059)
            }
        }
    }

    @Test func purgeBySubjectRemovesOnlyThatSubject() throws {
        try withNATS { _, connection in
            let jetStream = try connection.jetStream()
            _ = try jetStream.applyStream(configJSON: streamDefinition(StreamNames.snapshots))
            for chunk in 0..<3 {
                _ = try jetStream.publish(SnapshotSubjects.chunk(partition: 1, generation: 1, index: chunk), payload: bytes("g1-\(chunk)"))
                _ = try jetStream.publish(SnapshotSubjects.chunk(partition: 1, generation: 2, index: chunk), payload: bytes("g2-\(chunk)"))
            }
            #expect(try jetStream.streamState(StreamNames.snapshots).messages == 6)

            try jetStream.purge(stream: StreamNames.snapshots, subject: SnapshotSubjects.generation(partition: 1, generation: 1))
            let state = try jetStream.streamState(StreamNames.snapshots)
            #expect(state.messages == 3)
            #expect(state.lastSequence == 6)
            #expect(try jetStream.lastMessage(stream: StreamNames.snapshots, subject: SnapshotSubjects.chunk(partition: 1, generation: 1, index: 0)) == nil)
            #expect(try jetStream.lastMessage(stream: StreamNames.snapshots, subject: SnapshotSubjects.chunk(partition: 1, generation: 2, index: 0)) != nil)

            try jetStream.purge(stream: StreamNames.snapshots)
            #expect(try jetStream.streamState(StreamNames.snapshots).messages == 0)
        }
    }
}
