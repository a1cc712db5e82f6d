import CSwitchboardProto

/// What the fan-out sends to one notifier instance for one event: the event bytes untouched
/// and the instance's own local slots of the recipients.
public struct Delivery: Sendable, Equatable {
    /// `CHAT_EVENTS` stream sequence: clients use it to drop duplicates and see gaps.
    public var streamSeq: UInt64
    public var channelID: String
    /// The original `ChatEvent` bytes.
    public var event: [UInt8]
    public var slots: [UInt32]
    /// `stream_seq` of the previous event of the channel the fan-out delivered; 0 for none.
    public var prevSeq: UInt64
    /// Slots that get only the event's position (the sender, when its echo is skipped).
    public var positionSlots: [UInt32]

    public init(streamSeq: UInt64, channelID: String, event: [UInt8], slots: [UInt32], prevSeq: UInt64 = 0, positionSlots: [UInt32] = []) {
        self.streamSeq = streamSeq
        self.channelID = channelID
        self.event = event
        self.slots = slots
        self.prevSeq = prevSeq
        self.positionSlots = positionSlots
    }

    public init(decoding bytes: some Collection<UInt8>) throws(ProtoError) {
        let message = try unpacked("Delivery", bytes) { switchboard__v1__delivery__unpack(nil, $0, $1) }
        defer { switchboard__v1__delivery__free_unpacked(message, nil) }
        self.init(message.pointee)
    }

    init(_ m: Switchboard__V1__Delivery) {
        streamSeq = m.stream_seq
        channelID = swiftString(m.channel_id)
        event = swiftArray(m.event.data, count: m.event.len)
        slots = swiftArray(m.slots, count: m.n_slots)
        prevSeq = m.prev_seq
        positionSlots = swiftArray(m.position_slots, count: m.n_position_slots)
    }

    public func encoded() -> [UInt8] {
        event.withUnsafeBufferPointer { event in
            slots.withUnsafeBufferPointer { slots in
                positionSlots.withUnsafeBufferPointer { positionSlots in
                    Delivery.encode(streamSeq: streamSeq, prevSeq: prevSeq, channelID: channelID, event: UnsafeRawBufferPointer(event), slots: slots, positionSlots: positionSlots)
                }
            }
        }
    }

    /// The fan-out's hot path: packs straight from borrowed buffers (the event bytes as they
    /// came from JetStream, the planner's slot buffer) with one allocation, for the output.
    public static func encode(streamSeq: UInt64, prevSeq: UInt64 = 0, channelID: String, event: UnsafeRawBufferPointer, slots: UnsafeBufferPointer<UInt32>,
                              positionSlots: UnsafeBufferPointer<UInt32> = UnsafeBufferPointer(start: nil, count: 0)) -> [UInt8] {
        channelID.withCString { channelPointer in
                var m = Switchboard__V1__Delivery()
                switchboard__v1__delivery__init(&m)
                m.stream_seq = streamSeq
                m.prev_seq = prevSeq
                m.channel_id = UnsafeMutablePointer(mutating: channelPointer)
                m.event.len = event.count
                m.event.data = UnsafeMutablePointer(mutating: event.baseAddress?.assumingMemoryBound(to: UInt8.self))
                m.n_slots = slots.count
                m.slots = UnsafeMutablePointer(mutating: slots.baseAddress)
                m.n_position_slots = positionSlots.count
                m.position_slots = UnsafeMutablePointer(mutating: positionSlots.baseAddress)
                return withUnsafePointer(to: &m) { p in
                    packed(size: switchboard__v1__delivery__get_packed_size(p)) { switchboard__v1__delivery__pack(p, $0) }
                }
        }
    }
}

/// What one `notify.inbox.<instance>` message carries (without a `Switchboard-Kind`
/// header): the deliveries of one or more events for that instance, and the epoch of their
/// sequences.
public struct Deliveries: Sendable, Equatable {
    /// The `CHAT_EVENTS` epoch (`StreamEpoch`); empty when the sender did not say.
    public var epoch: String
    public var deliveries: [Delivery]

    public init(epoch: String, deliveries: [Delivery]) {
        self.epoch = epoch
        self.deliveries = deliveries
    }

    public init(decoding bytes: some Collection<UInt8>) throws(ProtoError) {
        let message = try unpacked("Deliveries", bytes) { switchboard__v1__deliveries__unpack(nil, $0, $1) }
        defer { switchboard__v1__deliveries__free_unpacked(message, nil) }
        let m = message.pointee
        epoch = swiftString(m.epoch)
        if m.n_deliveries > 0, let items = m.deliveries {
            deliveries = (0..<m.n_deliveries).compactMap { items[$0].map { Delivery($0.pointee) } }
        } else {
            deliveries = []
        }
    }

    public func encoded() -> [UInt8] {
        var builder = Builder(epoch: epoch)
        for delivery in deliveries { builder.append(encodedDelivery: delivery.encoded()) }
        return builder.bytes
    }

    /// Builds a `Deliveries` message from encoded `Delivery` messages, by appending: a
    /// repeated message field is each element's bytes behind its tag and length.
    public struct Builder: Sendable {
        public private(set) var bytes: [UInt8] = []
        public private(set) var count = 0
        /// The bytes of the epoch field, which every message of this builder starts with.
        private let header: [UInt8]

        public init(epoch: String = "") {
            var header: [UInt8] = []
            if !epoch.isEmpty {
                Self.appendField(2, Array(epoch.utf8), to: &header)
            }
            self.header = header
        }

        public mutating func append(encodedDelivery delivery: [UInt8]) {
            if bytes.isEmpty {
                bytes.reserveCapacity(header.count + delivery.count + 8)
                bytes.append(contentsOf: header)
            }
            Self.appendField(1, delivery, to: &bytes)
            count += 1
        }

        /// A length-delimited field: tag, varint length, bytes.
        private static func appendField(_ number: UInt8, _ value: [UInt8], to bytes: inout [UInt8]) {
            bytes.append(number << 3 | 2)
            var length = UInt64(value.count)
            while length >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: length) | 0x80)
                length >>= 7
            }
            bytes.append(UInt8(length))
            bytes.append(contentsOf: value)
        }

        /// Empties the builder, keeping its capacity.
        public mutating func removeAll() {
            bytes.removeAll(keepingCapacity: true)
            count = 0
        }
    }
}

/// An ephemeral typing indicator. From a notifier to the fan-out on `chat.typing.<p>.<channel>`
/// (no slots), and from the fan-out to a notifier inbox with the recipients' slots.
public struct Typing: Sendable, Equatable {
    public var channelID: String
    public var userID: String
    public var slots: [UInt32]

    public init(channelID: String, userID: String, slots: [UInt32] = []) {
        self.channelID = channelID
        self.userID = userID
        self.slots = slots
    }

    public init(decoding bytes: some Collection<UInt8>) throws(ProtoError) {
        let message = try unpacked("Typing", bytes) { switchboard__v1__typing__unpack(nil, $0, $1) }
        defer { switchboard__v1__typing__free_unpacked(message, nil) }
        let m = message.pointee
        channelID = swiftString(m.channel_id)
        userID = swiftString(m.user_id)
        slots = swiftArray(m.slots, count: m.n_slots)
    }

    public func encoded() -> [UInt8] {
        let arena = CArena()
        var m = Switchboard__V1__Typing()
        switchboard__v1__typing__init(&m)
        m.channel_id = arena.string(channelID)
        m.user_id = arena.string(userID)
        return slots.withUnsafeBufferPointer { slots in
            m.n_slots = slots.count
            m.slots = UnsafeMutablePointer(mutating: slots.baseAddress)
            return withUnsafePointer(to: &m) { p in
                packed(size: switchboard__v1__typing__get_packed_size(p)) { switchboard__v1__typing__pack(p, $0) }
            }
        }
    }
}
