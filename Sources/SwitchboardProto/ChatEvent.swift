import CSwitchboardProto

/// A chat event as upstream services publish it on `chat.events.<p>.<channel>`.
/// The fan-out reads only the routing fields; the notifier renders the body for clients.
public struct ChatEvent: Sendable, Equatable {
    public var eventID: String
    public var channelID: String
    public var senderID: String
    public var createdAtMs: Int64
    /// When true, the sender's own sockets do not receive the event.
    public var skipSenderEcho: Bool
    public var body: Body?

    /// The event's payload; exactly one kind per event.
    public enum Body: Sendable, Equatable {
        case messageCreated(messageID: String, text: String)
        case messageEdited(messageID: String, text: String)
        case messageDeleted(messageID: String)
        case reaction(messageID: String, emoji: String, removed: Bool)
        case readReceipt(messageID: String)
        case channelUpdated(name: String, topic: String)
    }

    public init(eventID: String, channelID: String, senderID: String, createdAtMs: Int64, skipSenderEcho: Bool = false, body: Body?) {
        self.eventID = eventID
        self.channelID = channelID
        self.senderID = senderID
        self.createdAtMs = createdAtMs
        self.skipSenderEcho = skipSenderEcho
        self.body = body
    }

    /// Decodes protobuf bytes; malformed input throws `ProtoError`, never traps.
    public init(decoding bytes: some Collection<UInt8>) throws(ProtoError) {
        let message = try unpacked("ChatEvent", bytes) { switchboard__v1__chat_event__unpack(nil, $0, $1) }
        defer { switchboard__v1__chat_event__free_unpacked(message, nil) }
        let m = message.pointee
        eventID = swiftString(m.event_id)
        channelID = swiftString(m.channel_id)
        senderID = swiftString(m.sender_id)
        createdAtMs = m.created_at_ms
        skipSenderEcho = m.skip_sender_echo != 0
        switch m.body_case {
        case SWITCHBOARD__V1__CHAT_EVENT__BODY_MESSAGE_CREATED:
            let b = m.message_created.pointee
            body = .messageCreated(messageID: swiftString(b.message_id), text: swiftString(b.text))
        case SWITCHBOARD__V1__CHAT_EVENT__BODY_MESSAGE_EDITED:
            let b = m.message_edited.pointee
            body = .messageEdited(messageID: swiftString(b.message_id), text: swiftString(b.text))
        case SWITCHBOARD__V1__CHAT_EVENT__BODY_MESSAGE_DELETED:
            body = .messageDeleted(messageID: swiftString(m.message_deleted.pointee.message_id))
        case SWITCHBOARD__V1__CHAT_EVENT__BODY_REACTION:
            let b = m.reaction.pointee
            body = .reaction(messageID: swiftString(b.message_id), emoji: swiftString(b.emoji), removed: b.removed != 0)
        case SWITCHBOARD__V1__CHAT_EVENT__BODY_READ_RECEIPT:
            body = .readReceipt(messageID: swiftString(m.read_receipt.pointee.message_id))
        case SWITCHBOARD__V1__CHAT_EVENT__BODY_CHANNEL_UPDATED:
            let b = m.channel_updated.pointee
            body = .channelUpdated(name: swiftString(b.name), topic: swiftString(b.topic))
        default:
            body = nil
        }
    }

    /// The protobuf encoding, as `chat.events` carries it.
    public func encoded() -> [UInt8] {
        let arena = CArena()
        var m = Switchboard__V1__ChatEvent()
        switchboard__v1__chat_event__init(&m)
        m.event_id = arena.string(eventID)
        m.channel_id = arena.string(channelID)
        m.sender_id = arena.string(senderID)
        m.created_at_ms = createdAtMs
        m.skip_sender_echo = skipSenderEcho ? 1 : 0
        switch body {
        case .messageCreated(let id, let text)?:
            let b = arena.message(Switchboard__V1__MessageCreated.self, switchboard__v1__message_created__init)
            b.pointee.message_id = arena.string(id)
            b.pointee.text = arena.string(text)
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY_MESSAGE_CREATED
            m.message_created = b
        case .messageEdited(let id, let text)?:
            let b = arena.message(Switchboard__V1__MessageEdited.self, switchboard__v1__message_edited__init)
            b.pointee.message_id = arena.string(id)
            b.pointee.text = arena.string(text)
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY_MESSAGE_EDITED
            m.message_edited = b
        case .messageDeleted(let id)?:
            let b = arena.message(Switchboard__V1__MessageDeleted.self, switchboard__v1__message_deleted__init)
            b.pointee.message_id = arena.string(id)
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY_MESSAGE_DELETED
            m.message_deleted = b
        case .reaction(let id, let emoji, let removed)?:
            let b = arena.message(Switchboard__V1__Reaction.self, switchboard__v1__reaction__init)
            b.pointee.message_id = arena.string(id)
            b.pointee.emoji = arena.string(emoji)
            b.pointee.removed = removed ? 1 : 0
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY_REACTION
            m.reaction = b
        case .readReceipt(let id)?:
            let b = arena.message(Switchboard__V1__ReadReceipt.self, switchboard__v1__read_receipt__init)
            b.pointee.message_id = arena.string(id)
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY_READ_RECEIPT
            m.read_receipt = b
        case .channelUpdated(let name, let topic)?:
            let b = arena.message(Switchboard__V1__ChannelUpdated.self, switchboard__v1__channel_updated__init)
            b.pointee.name = arena.string(name)
            b.pointee.topic = arena.string(topic)
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY_CHANNEL_UPDATED
            m.channel_updated = b
        case nil:
            m.body_case = SWITCHBOARD__V1__CHAT_EVENT__BODY__NOT_SET
        }
        return withUnsafePointer(to: &m) { p in
            packed(size: switchboard__v1__chat_event__get_packed_size(p)) { switchboard__v1__chat_event__pack(p, $0) }
        }
    }
}
