import SwitchboardProto

/// The deliveries of one read of events (across partitions) or of one retry, gathered per
/// notifier inbox into `Deliveries` messages: NATS carries one message per instance per read
/// instead of one per event and instance. Bounded by count and bytes; a message that reaches a bound goes out at
/// once, the rest when the try ends (`publishAll`). Nothing waits for events not yet fetched.
struct InboxBatches {
    /// Stamped on every message: the epoch of the sequences in it.
    let epoch: String
    let maxDeliveries: Int
    let maxBytes: Int
    private var slotBySubject: [String: Int] = [:]
    private var subjects: [String] = []
    private var builders: [Deliveries.Builder] = []

    init(epoch: String, maxDeliveries: Int, maxBytes: Int) {
        self.epoch = epoch
        self.maxDeliveries = max(1, maxDeliveries)
        self.maxBytes = maxBytes
    }

    /// Adds one encoded `Delivery` for `subject`, publishing that inbox's message first if
    /// the delivery would take it past the byte bound, and after if it reaches the count.
    mutating func add(_ delivery: [UInt8], to subject: String, publish: (String, [UInt8]) throws -> Void) rethrows {
        let slot: Int
        if let known = slotBySubject[subject] {
            slot = known
        } else {
            slot = builders.count
            slotBySubject[subject] = slot
            subjects.append(subject)
            builders.append(Deliveries.Builder(epoch: epoch))
        }
        if builders[slot].count > 0 && builders[slot].bytes.count + delivery.count + 6 > maxBytes {
            try send(slot, publish)
        }
        builders[slot].append(encodedDelivery: delivery)
        if builders[slot].count >= maxDeliveries { try send(slot, publish) }
    }

    /// Publishes every inbox's gathered deliveries, in the order the inboxes were first used.
    mutating func publishAll(_ publish: (String, [UInt8]) throws -> Void) rethrows {
        for slot in builders.indices where builders[slot].count > 0 { try send(slot, publish) }
    }

    private mutating func send(_ slot: Int, _ publish: (String, [UInt8]) throws -> Void) rethrows {
        let payload = builders[slot].bytes
        builders[slot].removeAll()
        try publish(subjects[slot], payload)
    }
}
