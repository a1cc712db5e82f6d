import NATSClient
import SwitchboardContracts
import SwitchboardProto

/// Keeps a standby partition's channel chain warm: follows the partition's events with an
/// ordered consumer and links them into the chain, but only up to where the active replica
/// has confirmed. The chain then stands exactly where a takeover resumes (the holder's ack
/// floor, or a little before), so taking over reads a short tail instead of the whole stream.
///
/// Events past the holder's confirmed position wait in `pending` (bounded: past `maxPending`
/// the follower gives up and is opened again later from where the chain stands). Used from
/// its pipeline's thread only.
final class ChainFollower {
    static let maxPending = 200_000

    private let consumer: OrderedConsumer
    private let partitionCount: Int
    /// Events read but not yet linked: their sequence and channel (nil: poison, not in the chain).
    private var pending: [(seq: UInt64, channel: String?)] = []
    private var pendingStart = 0

    /// Follows `partition` from just after `after`.
    init(jetStream: JetStream, partition: Int, after: UInt64, partitionCount: Int) throws {
        consumer = try jetStream.orderedConsumer(stream: StreamNames.events, filterSubject: Subjects.events(partition: partition), startSequence: after + 1, createTimeout: .seconds(5))
        self.partitionCount = partitionCount
    }

    enum Overflow: Error { case tooFarBehind }

    /// Reads what has arrived (within `budget`), then links every event up to `confirmed`
    /// into `chain`, moving `through` along.
    func advance(chain: inout ChannelChain, through: inout UInt64, confirmed: UInt64, budget: Duration) throws {
        let deadline = ContinuousClock.now + budget
        repeat {
            let read = try consumer.read(limit: 1024, timeout: .zero) { message in
                let subject = String(decoding: message.subject, as: UTF8.self)
                var channel: String?
                if case .event(let event) = StoredEvent.examine(subject: subject, payload: message.payload, partitionCount: partitionCount) { channel = event.channelID }
                pending.append((message.streamSequence, channel))
            }
            link(&chain, through: &through, confirmed: confirmed)
            if pending.count - pendingStart > Self.maxPending { throw Overflow.tooFarBehind }
            if read == 0 { break }
        } while ContinuousClock.now < deadline
    }

    private func link(_ chain: inout ChannelChain, through: inout UInt64, confirmed: UInt64) {
        while pendingStart < pending.count, pending[pendingStart].seq <= confirmed {
            let entry = pending[pendingStart]
            if entry.seq > through {
                if let channel = entry.channel { _ = chain.link(channel: channel, seq: entry.seq) }
                through = entry.seq
            }
            pendingStart += 1
        }
        if pendingStart > 4096, pendingStart * 2 > pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
    }

    func close() { consumer.close() }
}
