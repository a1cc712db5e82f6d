import ArgumentParser
import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardProto

/// Developer helper: publishes valid protobuf the way an upstream service would.
struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish a chat event or a membership change (for manual testing).", subcommands: [Event.self, Membership.self])

    struct Event: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish a MessageCreated event to CHAT_EVENTS.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Partition count of the deployment (env SWITCHBOARD_PARTITION_COUNT).") var partitionCount = 16
        @Option(help: "Channel id.") var channel: String
        @Option(help: "Sender user id.") var sender: String
        @Option(help: "Message text.") var text: String
        @Option(help: "Event id (Nats-Msg-Id, for deduplication); random when omitted.") var eventID: String?
        @Flag(help: "Do not echo the event to the sender's own sockets.") var skipEcho = false

        func run() throws {
            try requireValid(channel, "channel")
            try requireValid(sender, "sender")
            let id = eventID ?? UUID().uuidString
            let event = ChatEvent(
                eventID: id, channelID: channel, senderID: sender,
                createdAtMs: Int64(Date().timeIntervalSince1970 * 1000), skipSenderEcho: skipEcho,
                body: .messageCreated(messageID: id, text: text)
            )
            let subject = Subjects.event(channel: channel, partitionCount: partitionCount)
            let connection = try connection.connect()
            defer { connection.close() }
            let ack = try connection.jetStream().publish(subject, payload: event.encoded(), msgID: id)
            print("\(subject) stream=\(ack.stream) seq=\(ack.sequence)\(ack.duplicate ? " (duplicate)" : "")")
        }
    }

    struct Membership: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish a MembershipChange to CHAT_MEMBERSHIP.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Partition count of the deployment (env SWITCHBOARD_PARTITION_COUNT).") var partitionCount = 16
        @Option(help: "Channel id.") var channel: String
        @Option(help: "User id (ignored for channel-deleted).") var user: String = "_"
        @Option(help: "joined, left or channel-deleted.") var state: String = "joined"
        @Option(help: "Version (monotonic per channel); the current time in ms when omitted.") var version: UInt64?

        func run() throws {
            try requireValid(channel, "channel")
            let parsed: MembershipChange.State
            switch state {
            case "joined": parsed = .joined
            case "left": parsed = .left
            case "channel-deleted": parsed = .channelDeleted
            default: throw RoutectlFailure(code: 1, message: "--state must be joined, left or channel-deleted, not '\(state)'")
            }
            if parsed != .channelDeleted { try requireValid(user, "user") }
            let change = MembershipChange(
                channelID: channel, userID: parsed == .channelDeleted ? "" : user, state: parsed,
                version: version ?? UInt64(Date().timeIntervalSince1970 * 1000)
            )
            let subject = Subjects.membership(channel: channel, user: parsed == .channelDeleted ? Subjects.channelDeletedUser : user, partitionCount: partitionCount)
            let connection = try connection.connect()
            defer { connection.close() }
            let ack = try connection.jetStream().publish(subject, payload: change.encoded())
            print("\(subject) stream=\(ack.stream) seq=\(ack.sequence)")
        }
    }
}
