import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Testing
@testable import FanoutService

/// `prev` and the epoch on what the fan-out sends: the chain a client checks.
@Suite(.serialized) struct ChannelChainTests {
    @Test func eachChannelLinksToItsOwnPreviousEventOnce() {
        var chain = ChannelChain()
        #expect(chain.link(channel: "a", seq: 3) == 0)
        #expect(chain.link(channel: "b", seq: 4) == 0)
        #expect(chain.link(channel: "a", seq: 7) == 3)
        #expect(chain.link(channel: "a", seq: 7) == 0)  // linked already: not linked again
        #expect(chain.link(channel: "a", seq: 9) == 7)
        #expect(chain.channelCount == 2)
        // Unlinked newest first (what a replica that stands by does with its unconfirmed events).
        chain.unlink(channel: "a", seq: 9, prev: 7)
        chain.unlink(channel: "b", seq: 4, prev: 0)
        #expect(chain.link(channel: "a", seq: 9) == 7)
        #expect(chain.link(channel: "b", seq: 4) == 0)
        chain.unlink(channel: "a", seq: 3, prev: 0)  // not the channel's last: nothing changes
        #expect(chain.link(channel: "a", seq: 10) == 9)
    }

    @Test func deliveriesChainPerChannelSkipPoisonCarryTheEpochAndSurviveARestart() async throws {
        let rig = try PipelineRig(channels: 2)
        defer { rig.stop() }
        let (a, b) = (rig.channels[0], rig.channels[1])
        var seqs: [String: [UInt64]] = [:]
        for round in 0..<3 {
            for channel in [a, b] { seqs[channel, default: []].append(try rig.publish(channel: channel, text: "\(round)")) }
        }
        // Poison on a's subject: dead-lettered, not in the chain.
        _ = try rig.jetStream.publish(Subjects.event(channel: a, partitionCount: PipelineRig.partitionCount), payload: [0xFF, 0xFF, 0xFF])
        seqs[a]!.append(try rig.publish(channel: a, text: "after poison"))
        try await running(try rig.pipeline(rig.output)) {
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= 7 && rig.consumerUnacked() == 0 })
        }
        // A new pipeline (a restart) relinks from the stream up to its ack floor.
        seqs[b]!.append(try rig.publish(channel: b, text: "after restart"))
        seqs[a]!.append(try rig.publish(channel: a, text: "after restart"))
        try await running(try rig.pipeline(rig.output)) {
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= 9 && rig.consumerUnacked() == 0 })
        }
        for channel in [a, b] {
            let delivered = rig.deliveries.filter { $0.channelID == channel }
            #expect(delivered.map(\.streamSeq) == seqs[channel])
            #expect(delivered.map(\.prevSeq) == [0] + seqs[channel]!.dropLast(), "\(channel)")
        }
        let epoch = StreamEpoch.of(createdNs: try rig.jetStream.streamState(StreamNames.events).createdNs)
        #expect(StreamEpoch.isValid(epoch))
        #expect(rig.inboxEpochs == [epoch])
        #expect(try rig.jetStream.streamState(StreamNames.deadLetters).messages == 1)
    }

    /// An event that skips its sender's echo still gives the sender's sockets its position
    /// (without the content), so the sender's chain of the channel stays whole.
    @Test func theSenderWhoseEchoIsSkippedGetsThePositionOnly() async throws {
        let rig = try PipelineRig(channels: 1)
        defer { rig.stop() }
        let channel = rig.channels[0]
        let first = try rig.publish(channel: channel, text: "from someone else")
        let own = ChatEvent(eventID: "own", channelID: channel, senderID: "alice", createdAtMs: 1, skipSenderEcho: true, body: .messageCreated(messageID: "own", text: "mine"))
        let ownSeq = try rig.jetStream.publish(Subjects.event(channel: channel, partitionCount: PipelineRig.partitionCount), payload: own.encoded(), msgID: "own").sequence
        try await running(try rig.pipeline(rig.output)) {
            #expect(eventually(timeout: .seconds(30)) { rig.deliveries.count >= 2 && rig.consumerUnacked() == 0 })
        }
        let deliveries = rig.deliveries
        #expect(deliveries.map(\.streamSeq) == [first, ownSeq])
        #expect(deliveries.first?.slots == [0] && deliveries.first?.positionSlots == [])
        let position = try #require(deliveries.last)
        #expect(position.slots == [] && position.positionSlots == [0])
        #expect(position.event.isEmpty, "a position carries no content")
        #expect(position.prevSeq == first)
    }
}

extension ChannelChainTests {
    /// `CHAT_EVENTS` deleted and created anew under a running pipeline: it binds a consumer on
    /// the new stream, numbers its chain afresh and stamps the new epoch.
    @Test func aStreamCreatedAnewUnderARunningPipelineIsConsumedWithItsNewEpoch() async throws {
        let rig = try PipelineRig(channels: 1)
        defer { rig.stop() }
        let channel = rig.channels[0]
        let old = try rig.publish(channel: channel, text: "old")
        let oldEpoch = StreamEpoch.of(createdNs: try rig.jetStream.streamState(StreamNames.events).createdNs)
        try await running(try rig.pipeline(rig.output)) {
            #expect(eventually(timeout: .seconds(10)) { rig.deliveries.count >= 1 })
            _ = try rig.connection.request("$JS.API.STREAM.DELETE.\(StreamNames.events)", payload: [], timeout: .seconds(5))
            _ = try StreamDefinitions(directory: RepositoryPaths.streams)
                .apply(subjectTransforms: rig.jetStream.serverSupportsStreamSubjectTransforms(), rig.jetStream.applyStream(configJSON:))
            let again = try rig.publish(channel: channel, text: "new")
            #expect(again <= old, "numbered from 1 again")
            #expect(eventually(timeout: .seconds(20)) { rig.deliveries.count >= 2 }, "the new stream's event was not delivered")
        }
        let newEpoch = StreamEpoch.of(createdNs: try rig.jetStream.streamState(StreamNames.events).createdNs)
        #expect(newEpoch != oldEpoch)
        #expect(rig.inboxEpochs == [oldEpoch, newEpoch])
        #expect(rig.deliveries.last?.prevSeq == 0, "a new stream starts a new chain")
    }
}
