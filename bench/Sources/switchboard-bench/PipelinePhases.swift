import Foundation
import Histogram
import NATSClient
import RoutingCore
import SwitchboardContracts
import SwitchboardProto
import Synchronization

struct ThroughputResult {
    var events: Int
    var eventsPerSecond: Double
    var notes: String
    var summary: String
}

struct LatencyResult {
    var histogram: Histogram<UInt64>
    var notes: String
    var summary: String
}

/// Counters shared by a phase's threads.
final class PipelineTally: Sendable {
    let count = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
    let firstNs = Atomic<UInt64>(UInt64.max)
    let lastNs = Atomic<UInt64>(0)

    /// Up to `batch` messages (500 ms wait); a failed fetch is counted and backed off 50 ms.
    func fetch(_ batch: Int, from subscription: PullSubscription) -> [JetStreamMessage] {
        do {
            return try subscription.fetch(batch: batch, timeout: .milliseconds(500))
        } catch {
            errors.add(1, ordering: .relaxed)
            usleep(50_000)
            return []
        }
    }

    func noteFirst(_ value: UInt64) {
        var current = firstNs.load(ordering: .relaxed)
        while value < current {
            let (exchanged, original) = firstNs.compareExchange(expected: current, desired: value, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    func noteLast(_ value: UInt64) {
        var current = lastNs.load(ordering: .relaxed)
        while value > current {
            let (exchanged, original) = lastNs.compareExchange(expected: current, desired: value, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}

/// The measuring phases of `switchboard-bench pipeline` (see `PipelineBench`).
struct PipelinePhases {
    enum Path { case relay, fanout }

    let env: PipelineEnvironment
    let workload: PipelineWorkload
    let fetchBatch: Int
    let warmupNs: UInt64
    private var partitionCount: Int { env.partitionCount }
    private var jetStream: JetStream { env.jetStream }

    init(env: PipelineEnvironment, workload: PipelineWorkload, fetchBatch: Int, warmupNs: UInt64) {
        self.env = env
        self.workload = workload
        self.fetchBatch = fetchBatch
        self.warmupNs = warmupNs
    }

    // MARK: publishing

    /// Publishes `count` events as fast as async publish allows; returns events per partition,
    /// expected inbox deliveries, and the publish rate.
    private func publishBacklog(count: Int, salt: UInt64, tag: String) throws -> (perPartition: [Int], deliveries: Int, rate: Double) {
        var perPartition = [Int](repeating: 0, count: partitionCount)
        var deliveries = 0
        let started = ContinuousClock.now
        for index in 0..<count {
            let channel = workload.channel(ofEvent: index, salt: salt)
            perPartition[workload.partitions[channel]] += 1
            deliveries += workload.deliveries[channel]
            let id = "\(tag)-\(index)"
            try jetStream.publishAsync(workload.eventSubjects[channel], payload: workload.event(channel: channel, id: id, sentNs: pipelineNowNs()), msgID: id)
        }
        try jetStream.publishAsyncComplete(timeout: .seconds(60))
        let seconds = (ContinuousClock.now - started).seconds
        return (perPartition, deliveries, Double(count) / seconds)
    }

    struct Paced {
        var sent: Int
        var achievedRate: Double
        var maxBehindMs: Double
        var expectedDeliveries: Int
    }

    /// Publishes at `rate` events/s for `seconds`, each event stamped with its publish instant
    /// (taken just before the async publish). Falling behind is measured, not hidden.
    private func pacedPublish(rate: Int, seconds: Double, salt: UInt64, tag: String, sink: PipelineSink) throws -> Paced {
        try pacedPublish(rate: rate, seconds: seconds, salt: salt, tag: tag) { start in
            sink.recordFromNs.store(start + warmupNs, ordering: .relaxed)
        }
    }

    /// The paced publisher, telling `onStart` the schedule's start instant before the first
    /// event goes out (receivers derive their warm-up cut-off from it).
    func pacedPublish(rate: Int, seconds: Double, salt: UInt64, tag: String, onStart: (UInt64) -> Void) throws -> Paced {
        let total = Int(Double(rate) * seconds)
        let intervalNs = 1e9 / Double(rate)
        let start = pipelineNowNs()
        onStart(start)
        let hardStop = start + UInt64(seconds * 3e9) + 10_000_000_000
        var index = 0
        var maxBehind: UInt64 = 0
        var deliveries = 0
        while index < total {
            let now = pipelineNowNs()
            if now > hardStop { break }
            let due = min(total, Int(Double(now - start) / intervalNs) + 1)
            if index >= due {
                let next = start + UInt64(Double(index) * intervalNs)
                if next > now { usleep(UInt32(max(10, (next - now) / 1000))) }
                continue
            }
            let scheduled = start + UInt64(Double(index) * intervalNs)
            if now > scheduled { maxBehind = max(maxBehind, now - scheduled) }
            while index < due {
                let channel = workload.channel(ofEvent: index, salt: salt)
                deliveries += workload.deliveries[channel]
                let id = "\(tag)-\(index)"
                try jetStream.publishAsync(workload.eventSubjects[channel], payload: workload.event(channel: channel, id: id, sentNs: pipelineNowNs()), msgID: id)
                index += 1
            }
        }
        let elapsed = Double(pipelineNowNs() - start) / 1e9
        try jetStream.publishAsyncComplete(timeout: .seconds(30))
        return Paced(sent: index, achievedRate: Double(index) / elapsed, maxBehindMs: Double(maxBehind) / 1e6, expectedDeliveries: deliveries)
    }

    private func deleteConsumers(prefix: String) {
        for partition in 0..<partitionCount { try? jetStream.deleteConsumer(stream: StreamNames.events, durable: "\(prefix)\(partition)") }
    }

    // MARK: phase A

    /// A backlog drained by one durable pull consumer per partition: fetch a batch, ack each.
    func rawFetchAck(events: Int) throws -> ThroughputResult {
        try jetStream.purge(stream: StreamNames.events)
        let backlog = try publishBacklog(count: events, salt: 1, tag: "raw")
        print(String(format: "published %d events at %.0f events/s (async publish)", events, backlog.rate))
        let connection = try NATSConnection(options: .init(url: env.natsURL, name: "bench-raw"))
        defer { connection.close() }
        let consumerJS = try connection.jetStream()
        let subscriptions = try (0..<partitionCount).map {
            try consumerJS.pullSubscribe(stream: StreamNames.events, durable: "bench-raw-p\($0)", filterSubject: Subjects.events(partition: $0), ackWait: .seconds(5), maxAckPending: 20_000)
        }
        let tally = PipelineTally()
        let deadlineNs = pipelineNowNs() + UInt64(max(60, events / 1000)) * 1_000_000_000
        let batch = fetchBatch
        for (partition, subscription) in subscriptions.enumerated() {
            let expected = backlog.perPartition[partition]
            let thread = Thread {
                var got = 0
                while got < expected && pipelineNowNs() < deadlineNs {
                    let messages = tally.fetch(batch, from: subscription)
                    if messages.isEmpty { continue }
                    tally.noteFirst(pipelineNowNs())
                    for message in messages {
                        do { try message.ack() } catch { tally.errors.add(1, ordering: .relaxed) }
                    }
                    got += messages.count
                    tally.count.add(messages.count, ordering: .relaxed)
                    tally.noteLast(pipelineNowNs())
                }
                tally.finished.add(1, ordering: .relaxed)
            }
            thread.name = "bench-raw-p\(partition)"
            thread.start()
        }
        while tally.finished.load(ordering: .relaxed) < partitionCount && pipelineNowNs() < deadlineNs + 2_000_000_000 { usleep(10_000) }
        try? connection.flush(timeout: .seconds(5))
        let consumed = tally.count.load(ordering: .relaxed)
        let seconds = Double(tally.lastNs.load(ordering: .relaxed) &- tally.firstNs.load(ordering: .relaxed)) / 1e9
        for subscription in subscriptions { subscription.unsubscribe() }
        deleteConsumers(prefix: "bench-raw-p")
        try jetStream.purge(stream: StreamNames.events)
        guard consumed >= events, seconds > 0 else {
            throw PipelineError.timeout("raw consumers got \(consumed) of \(events) events (\(tally.errors.load(ordering: .relaxed)) errors)")
        }
        let rate = Double(consumed) / seconds
        let errors = tally.errors.load(ordering: .relaxed)
        let notes = "\(partitionCount) consumers, \(consumed) events in \(String(format: "%.2f", seconds)) s\(errors > 0 ? ", \(errors) errors" : "")"
        return ThroughputResult(events: consumed, eventsPerSecond: rate, notes: notes,
                                summary: String(format: "raw fetch+ack: %.0f events/s", rate) + " (\(notes))")
    }

    // MARK: phase B

    /// A backlog published before the fan-out starts; events/s from its first to its last
    /// inbox delivery.
    func fanoutThroughput(events: Int, fanoutExecutable: String, streamsDir: String) throws -> ThroughputResult {
        try jetStream.purge(stream: StreamNames.events)
        let sink = PipelineSink()
        let subscription = try env.subscriber.subscribe(Subjects.allInboxes) { _ in sink.counted(at: pipelineNowNs()) }
        defer { subscription.unsubscribe() }
        let backlog = try publishBacklog(count: events, salt: 2, tag: "drain")
        print(String(format: "published %d events at %.0f events/s (async publish); expecting %d deliveries", events, backlog.rate, backlog.deliveries))
        let ready = try env.startFanout(executable: fanoutExecutable, streamsDir: streamsDir)
        print(String(format: "fanout ready after %.2f s", ready.seconds))
        let drainTimeout = Duration.seconds(max(120, events / 500))
        let drained = env.waitDrained(prefix: ConsumerNames.fanoutPrefix, timeout: drainTimeout)
        usleep(300_000)
        let received = sink.messages.load(ordering: .relaxed)
        let dropped = subscription.droppedMessages
        guard drained else {
            throw PipelineError.timeout("fan-out did not drain \(events) events within \(drainTimeout) (\(received) deliveries seen); log:\n\(env.fanout?.logTail() ?? "")")
        }
        let seconds = Double(sink.lastReceiveNs.load(ordering: .relaxed) &- sink.firstReceiveNs.load(ordering: .relaxed)) / 1e9
        guard received > 0, seconds > 0 else { throw PipelineError.setup("fan-out drained but no inbox delivery was seen") }
        let rate = Double(events) / seconds
        let notes = String(format: "%d events in %.2f s; %.0f deliveries/s; deliveries %d of %d expected", events, seconds, Double(received) / seconds,
                           received, backlog.deliveries) + (dropped > 0 ? ", \(dropped) dropped by the bench subscriber" : "")
        return ThroughputResult(events: events, eventsPerSecond: rate, notes: notes,
                                summary: String(format: "fan-out drain: %.0f events/s", rate) + " (\(notes))")
    }

    // MARK: latency phases

    /// Events at `rate` through the relay (before the fan-out runs) or through the fan-out.
    func latency(kind: Path, rate: Int, seconds: Double) throws -> LatencyResult {
        try jetStream.purge(stream: StreamNames.events)
        let sink = PipelineSink()
        let subscription: NATSSubscription
        let tally = PipelineTally()
        var relayConnection: NATSConnection?
        switch kind {
        case .fanout:
            guard env.fanout?.isRunning == true else { throw PipelineError.setup("fanout is not running") }
            subscription = try env.subscriber.subscribe(Subjects.allInboxes) { message in
                let now = pipelineNowNs()
                for delivery in (try? Deliveries(decoding: message.payload).deliveries) ?? [] {
                    sink.received(at: now, sentNs: PipelineWorkload.sentNs(ofEvent: delivery.event))
                }
            }
        case .relay:
            subscription = try env.subscriber.subscribe("bench.relay.*") { message in
                let now = pipelineNowNs()
                sink.received(at: now, sentNs: PipelineWorkload.sentNs(ofEvent: message.payload))
            }
            let connection = try NATSConnection(options: .init(url: env.natsURL, name: "bench-relay"))
            relayConnection = connection
            try startRelay(connection: connection, tally: tally)
        }
        defer {
            subscription.unsubscribe()
            if let relayConnection {
                tally.stop.store(true, ordering: .relaxed)
                let deadline = ContinuousClock.now + .seconds(5)
                while tally.finished.load(ordering: .relaxed) < partitionCount && ContinuousClock.now < deadline { usleep(10_000) }
                deleteConsumers(prefix: "bench-relay-p")
                relayConnection.close()
            }
        }
        let salt: UInt64 = kind == .relay ? 3 : 4
        let paced = try pacedPublish(rate: rate, seconds: seconds, salt: salt, tag: kind == .relay ? "relay" : "live", sink: sink)
        let prefix = kind == .relay ? "bench-relay-p" : ConsumerNames.fanoutPrefix
        let drained = env.waitDrained(prefix: prefix, timeout: .seconds(60))
        let expected = kind == .relay ? paced.sent : paced.expectedDeliveries
        // Everything is acked, so every message is on the server; give a lagging bench
        // subscriber time to take the rest (until complete, or 1 s without progress, ≤ 10 s).
        let receiveDeadline = ContinuousClock.now + .seconds(10)
        var lastSeen = -1, lastProgress = ContinuousClock.now
        while ContinuousClock.now < receiveDeadline {
            let seen = sink.messages.load(ordering: .relaxed)
            if seen >= expected { break }
            if seen != lastSeen { lastSeen = seen; lastProgress = ContinuousClock.now }
            if ContinuousClock.now - lastProgress > .seconds(1) { break }
            usleep(20_000)
        }
        let received = sink.messages.load(ordering: .relaxed)
        let histogram = sink.latencies
        let name = kind == .relay ? "relay" : "fan-out"
        if !drained { print("warning: \(name) consumers not drained within 60 s") }
        let undecodable = sink.undecodable.load(ordering: .relaxed)
        let relayErrors = tally.errors.load(ordering: .relaxed)
        var notes = String(format: "sent %d events at %.0f/s (publisher at most %.1f ms behind schedule); received %d of %d expected messages",
                           paced.sent, paced.achievedRate, paced.maxBehindMs, received, expected)
        if undecodable > 0 { notes += ", \(undecodable) without a timestamp" }
        if subscription.droppedMessages > 0 { notes += ", \(subscription.droppedMessages) dropped by the bench subscriber" }
        if relayErrors > 0 { notes += ", \(relayErrors) relay errors" }
        if !drained { notes += ", NOT drained within 60 s" }
        let summary = "\(name): p50 \(PipelineBench.ms(histogram.valueAtPercentile(50))) ms, p90 \(PipelineBench.ms(histogram.valueAtPercentile(90))) ms, "
            + "p99 \(PipelineBench.ms(histogram.valueAtPercentile(99))) ms, p99.9 \(PipelineBench.ms(histogram.valueAtPercentile(99.9))) ms, "
            + "max \(PipelineBench.ms(histogram.max)) ms over \(histogram.totalCount) samples (\(notes))"
        return LatencyResult(histogram: histogram, notes: notes, summary: summary)
    }

    /// One thread per partition: fetch, publish each payload unchanged on core NATS, flush,
    /// then ack — the fan-out's I/O shape without decoding, planning or encoding.
    private func startRelay(connection: NATSConnection, tally: PipelineTally) throws {
        let consumerJS = try connection.jetStream()
        let batch = fetchBatch
        for partition in 0..<partitionCount {
            let subscription = try consumerJS.pullSubscribe(stream: StreamNames.events, durable: "bench-relay-p\(partition)", filterSubject: Subjects.events(partition: partition),
                                                            ackWait: .seconds(5), maxAckPending: 20_000)
            let subject = "bench.relay.\(partition)"
            let thread = Thread {
                let hardStop = ContinuousClock.now + .seconds(600)
                while !tally.stop.load(ordering: .relaxed) && ContinuousClock.now < hardStop {
                    let messages = tally.fetch(batch, from: subscription)
                    if messages.isEmpty { continue }
                    do {
                        for message in messages { try connection.publish(subject, payload: message.payload) }
                        try connection.flush(timeout: .seconds(2))
                        for message in messages { try message.ack() }
                        tally.count.add(messages.count, ordering: .relaxed)
                    } catch {
                        tally.errors.add(1, ordering: .relaxed)
                    }
                }
                subscription.unsubscribe()
                tally.finished.add(1, ordering: .relaxed)
            }
            thread.name = "bench-relay-p\(partition)"
            thread.start()
        }
    }
}
