import Foundation
import NATSClient
import SwitchboardContracts
import SwitchboardProto
import Synchronization

/// The two designs a user would otherwise build, run in the bench on the same servers and
/// events as Switchboard:
/// - per-user subjects: a relay consumes `CHAT_EVENTS` and publishes one core message per
///   online recipient to `user.<id>`; each simulated notifier subscribes `user.<id>` for
///   every one of its users;
/// - per-channel subscriptions: the relay publishes once per event to `chat.channel.<id>`;
///   each simulated notifier subscribes every channel that one of its users belongs to.
/// The relay has the fan-out's I/O shape (per partition: fetch a batch, publish, flush, one
/// ack-all), so the designs differ only in what crosses NATS after JetStream.
enum EndToEndDesign: String, CaseIterable {
    case switchboard = "Switchboard (instance inboxes)"
    case perUser = "per-user subjects"
    case perChannel = "per-channel subscriptions"

    var tag: String {
        switch self {
        case .switchboard: "sw"
        case .perUser: "pu"
        case .perChannel: "pc"
        }
    }

    var salt: UInt64 {
        switch self {
        case .switchboard: 11
        case .perUser: 12
        case .perChannel: 13
        }
    }
}

/// The relay of a baseline design (see `EndToEndDesign`).
final class EndToEndRelay: @unchecked Sendable {
    let design: EndToEndDesign
    private let connection: NATSConnection
    private let subscriptions: [PullSubscription]
    let published = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let finished = Atomic<Int>(0)
    let consumerPrefix: String

    /// `onlineMembers[channel]` are the channel's online users (for per-user publishing).
    init(design: EndToEndDesign, natsURL: String, partitionCount: Int, fetchBatch: Int, onlineMembers: [[Int]]) throws {
        precondition(design != .switchboard)
        self.design = design
        consumerPrefix = "bench-\(design.tag)-p"
        connection = try NATSConnection(options: .init(url: natsURL, name: "bench-relay-\(design.tag)"))
        let js = try connection.jetStream()
        subscriptions = try (0..<partitionCount).map {
            try js.pullSubscribe(stream: StreamNames.events, durable: "bench-\(design.tag)-p\($0)", filterSubject: Subjects.events(partition: $0),
                                 ackWait: .seconds(5), maxAckPending: 20_000, ackPolicy: .all)
        }
        let userSubjects = onlineMembers.map { $0.map { "user.\(PipelineWorkload.userID($0))" } }
        for (partition, subscription) in subscriptions.enumerated() {
            let thread = Thread { [self] in
                relay(subscription, fetchBatch: fetchBatch, userSubjects: userSubjects)
                finished.add(1, ordering: .relaxed)
            }
            thread.name = "bench-relay-\(design.tag)-p\(partition)"
            thread.start()
        }
    }

    private func relay(_ subscription: PullSubscription, fetchBatch: Int, userSubjects: [[String]]) {
        while !stopping.load(ordering: .relaxed) {
            let batch: [JetStreamMessage]
            do { batch = try subscription.fetch(batch: fetchBatch, timeout: .milliseconds(500)) } catch {
                errors.add(1, ordering: .relaxed)
                usleep(50_000)
                continue
            }
            guard let last = batch.last else { continue }
            var count = 0
            do {
                for message in batch {
                    // Subject `chat.events.<p>.ch<n>`: the channel is the last token.
                    let channelID = message.subject.utf8.split(separator: UInt8(ascii: ".")).last ?? []
                    guard let channel = EndToEndParse.channelIndex(channelID), channel < userSubjects.count else {
                        errors.add(1, ordering: .relaxed)
                        continue
                    }
                    switch design {
                    case .perUser:
                        for subject in userSubjects[channel] { try connection.publish(subject, payload: message.payload) }
                        count += userSubjects[channel].count
                    case .perChannel:
                        try connection.publish("chat.channel.\(String(decoding: channelID, as: UTF8.self))", payload: message.payload)
                        count += 1
                    case .switchboard:
                        break
                    }
                }
                try connection.flush(timeout: .seconds(5))
                try last.ack()
                published.add(count, ordering: .relaxed)
            } catch {
                errors.add(1, ordering: .relaxed)
            }
        }
        subscription.unsubscribe()
    }

    func stop(jetStream: JetStream) {
        stopping.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(5)
        while finished.load(ordering: .relaxed) < subscriptions.count && ContinuousClock.now < deadline { usleep(10_000) }
        for partition in 0..<subscriptions.count { try? jetStream.deleteConsumer(stream: StreamNames.events, durable: "\(consumerPrefix)\(partition)") }
        connection.close()
    }
}

/// The simulated notifiers of a baseline design: one `EndToEndRawSubscriber` per instance,
/// each with its own recorder (touched only by its reader thread).
final class EndToEndBaselineNotifiers: @unchecked Sendable {
    let subscribers: [EndToEndRawSubscriber]
    let recorders: [EndToEndRecorder]
    let subscriptionCount: Int

    /// `users[i]` are instance i's online users. Per user: receiver = user index (duplicates
    /// per user and channel). Per channel: receiver = instance index.
    init(design: EndToEndDesign, natsPort: UInt16, workload: PipelineWorkload, topology: EndToEndTopology, events: Int) throws {
        var subscribers: [EndToEndRawSubscriber] = []
        var recorders: [EndToEndRecorder] = []
        var total = 0
        do {
            for (instance, instanceUsers) in topology.usersByInstance.enumerated() {
                let subscriber = try EndToEndRawSubscriber(port: natsPort, name: "bench-\(design.tag)-notifier-\(instance + 1)")
                subscribers.append(subscriber)
                let recorder = EndToEndRecorder(events: events)
                recorders.append(recorder)
                let subjects: [(subject: String, receiver: Int)]
                switch design {
                case .perUser:
                    subjects = instanceUsers.map { ("user.\(PipelineWorkload.userID($0))", $0) }
                case .perChannel:
                    var channels = Set<Int>()
                    for user in instanceUsers { channels.formUnion(topology.channelsOf[user]) }
                    subjects = channels.sorted().map { ("chat.channel.\(workload.channelIDs[$0])", instance) }
                case .switchboard:
                    subjects = []
                }
                try subscriber.subscribe(subjects) { receiver, payload, now in
                    guard let event = try? ChatEvent(decoding: payload),
                          let channel = EndToEndParse.channelIndex(event.channelID.utf8),
                          let index = EndToEndParse.eventIndex(ofID: event.eventID.utf8),
                          case .messageCreated(_, let text)? = event.body,
                          let sentNs = EndToEndParse.number(text.utf8.dropFirst(2)) else {
                        recorder.unreadable()
                        return
                    }
                    recorder.record(receiver: receiver, channel: channel, order: UInt64(index), event: index, sentNs: sentNs, now: now)
                }
                total += subjects.count
            }
        } catch {
            subscribers.forEach { $0.stop() }
            throw error
        }
        self.subscribers = subscribers
        self.recorders = recorders
        subscriptionCount = total
    }

    var received: Int { recorders.reduce(0) { $0 + $1.received.load(ordering: .relaxed) } }

    func setRecordFrom(_ ns: UInt64) {
        for recorder in recorders { recorder.recordFromNs.store(ns, ordering: .relaxed) }
    }

    /// Stops the readers; afterwards the recorders are quiet.
    func stop() { subscribers.forEach { $0.stop() } }
}
