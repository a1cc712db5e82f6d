import Foundation
import Histogram
import NATSClient
import SwitchboardContracts
import SwitchboardProto

/// What one design did in its phase.
struct EndToEndOutcome {
    let design: EndToEndDesign
    var sent = 0
    var achievedRate = 0.0
    var maxBehindMs = 0.0
    /// Receipts at the design's receivers: WebSocket frames (Switchboard), NATS messages at
    /// the simulated notifiers (baselines).
    var expected = 0
    var receivers = EndToEndRecorder.Merged(histogram: Histogram<UInt64>(), counts: [], duplicates: 0, unparsable: 0, outOfRange: 0, receipts: 0)
    var lost = 0
    var unexpected = 0
    /// Switchboard only: the notifiers' inbox subscription, tapped by the bench (like for like
    /// with the baselines' measurement point).
    var inbox: EndToEndRecorder.Merged?
    var inboxExpected = 0
    var inboxLost = 0
    /// Messages the router published after JetStream (deliveries / per-user / per-channel)
    /// and the messages nats-server delivered for them to notifiers.
    var hopPublished = 0
    var hopDelivered = 0
    /// Expected hop deliveries from the workload (instances with an online member, summed).
    var expectedInstanceDeliveries = 0
    var varzIn = 0
    var varzOut = 0
    var subscriptions = 0
    var natsCPU = 0.0
    var benchCPU = 0.0
    var servicesCPU = 0.0
    var receiveSeconds = 0.0
    var drained = true
    var relayErrors = 0
    var socketsClosed = 0
    var closedHeartbeat = 0
    var closedSlowConsumer = 0
    /// Switchboard only: the notifiers' own counters over the phase (frames written to
    /// sockets, deliveries dropped for want of a socket or while closing).
    var notifierFrames = 0
    var notifierDropped = 0
    var notifierDroppedClosing = 0
    var notifierSlowConsumerCloses = 0
    /// Per channel-size bucket: (events, hop messages) — for the messages/event chart.
    var bucketEvents: [Int] = []
    var bucketMessages: [Int] = []

    var summary: String {
        let h = receivers.histogram
        var line = "\(design.rawValue): sent \(sent) events at \(String(format: "%.0f", achievedRate))/s; "
            + "received \(receivers.receipts) of \(expected) expected (lost \(lost), duplicates \(receivers.duplicates)); "
            + "p50 \(PipelineBench.ms(h.valueAtPercentile(50))) ms, p99 \(PipelineBench.ms(h.valueAtPercentile(99))) ms, max \(PipelineBench.ms(h.max)) ms; "
            + String(format: "hop messages %.2f/event published, %.2f/event delivered; nats-server CPU %.1f s", Double(hopPublished) / Double(max(1, sent)), Double(hopDelivered) / Double(max(1, sent)), natsCPU)
        if design == .switchboard { line += "; notifiers wrote \(notifierFrames) frames, dropped \(notifierDropped) recipient deliveries (\(notifierDroppedClosing) to closing sockets), closed \(notifierSlowConsumerCloses) sockets as slow consumers" }
        if let inbox { line += "; at the inbox p99 \(PipelineBench.ms(inbox.histogram.valueAtPercentile(99))) ms" }
        if !drained { line += "; NOT drained" }
        return line
    }
}

/// Runs one design's phase: set up its receivers (and relay), publish `rate` events/s for
/// `seconds` into `CHAT_EVENTS`, wait until the router drained its consumers and the receivers
/// stop receiving, and read the servers' counters around it.
struct EndToEndPhases {
    let env: PipelineEnvironment
    let setup: EndToEndSetup
    let workload: PipelineWorkload
    let topology: EndToEndTopology
    let fleet: EndToEndClientFleet
    let rate: Int
    let seconds: Double
    let warmupNs: UInt64
    let fetchBatch: Int
    let streamsDir: String

    /// Channel-size buckets of the messages/event chart (upper bounds, members); the median
    /// channel size of the default workload (50) sits in the middle of the 31–70 bucket.
    static let bucketBounds = [10, 30, 70, 150, 500, Int.max]

    static func bucket(ofSize size: Int) -> Int { bucketBounds.firstIndex { size <= $0 } ?? bucketBounds.count - 1 }

    func run(_ design: EndToEndDesign) throws -> EndToEndOutcome {
        try env.jetStream.purge(stream: StreamNames.events)
        let events = Int(Double(rate) * seconds)
        var outcome = EndToEndOutcome(design: design)
        let monitor = env.natsMonitorPort ?? 0

        var relay: EndToEndRelay?
        var baseline: EndToEndBaselineNotifiers?
        var tap: NATSSubscription?
        let tapRecorder = EndToEndRecorder(events: events)
        let consumerPrefix: String
        switch design {
        case .switchboard:
            // The bench's own view of the inboxes: what the notifiers' one subscription gets.
            tap = try env.subscriber.subscribe(Subjects.allInboxes) { message in
                let now = pipelineNowNs()
                guard let deliveries = try? Deliveries(decoding: message.payload).deliveries, !deliveries.isEmpty else {
                    tapRecorder.unreadable()
                    return
                }
                for delivery in deliveries {
                    guard let event = try? ChatEvent(decoding: delivery.event),
                          let channel = EndToEndParse.channelIndex(delivery.channelID.utf8),
                          let index = EndToEndParse.eventIndex(ofID: event.eventID.utf8),
                          let sentNs = PipelineWorkload.sentNs(ofEvent: delivery.event),
                          let instance = EndToEndParse.eventIndex(ofID: message.subject.utf8) else {
                        tapRecorder.unreadable()
                        continue
                    }
                    tapRecorder.record(receiver: instance, channel: channel, order: delivery.streamSeq, event: index, sentNs: sentNs, now: now)
                }
            }
            if env.fanout == nil {
                let ready = try env.startFanout(executable: setup.binDirectory.appendingPathComponent("fanout").path, streamsDir: streamsDir)
                print(String(format: "fanout ready after %.2f s", ready.seconds))
            }
            consumerPrefix = ConsumerNames.fanoutPrefix
        case .perUser, .perChannel:
            baseline = try EndToEndBaselineNotifiers(design: design, natsPort: env.natsPort, workload: workload, topology: topology, events: events)
            let started = try EndToEndRelay(design: design, natsURL: env.natsURL, partitionCount: env.partitionCount, fetchBatch: fetchBatch,
                                            onlineMembers: topology.onlineMembers)
            relay = started
            consumerPrefix = started.consumerPrefix
        }
        defer {
            tap?.unsubscribe()
            relay?.stop(jetStream: env.jetStream)
            baseline?.stop()
        }
        switch design {
        case .switchboard: outcome.subscriptions = EndToEndProbes.subscriptions(port: monitor, prefix: Subjects.inbox(instance: "")) ?? -1
        case .perUser: outcome.subscriptions = EndToEndProbes.subscriptions(port: monitor, prefix: "user.") ?? -1
        case .perChannel: outcome.subscriptions = EndToEndProbes.subscriptions(port: monitor, prefix: "chat.channel.") ?? -1
        }
        // The bench's tap is one more inbox-wildcard subscription; it is not the design's.
        if design == .switchboard && outcome.subscriptions > 0 { outcome.subscriptions -= 1 }

        let servicePIDs = design == .switchboard ? setup.notifierPIDs + [env.fanout?.pid].compactMap { $0 } : []
        let fanoutPort = env.fanoutHTTPPort
        let deliveriesBefore = design == .switchboard ? fanoutPort.flatMap { EndToEndProbes.counter(port: $0, metric: "switchboard_fanout_deliveries_total") } ?? 0 : 0
        let notifierCounters = { (metric: String, labels: String) -> Int in
            setup.notifierPorts.reduce(0) { $0 + Int(EndToEndProbes.counter(port: $1, metric: metric, labelFilter: labels) ?? 0) }
        }
        let framesBefore = notifierCounters("switchboard_notifier_frames_written_total", "")
        let droppedBefore = notifierCounters("switchboard_notifier_dropped_deliveries_total", "")
        let droppedClosingBefore = notifierCounters("switchboard_notifier_dropped_deliveries_total", #"reason="closing""#)
        let slowClosesBefore = notifierCounters("switchboard_notifier_closes_total", #"reason="slow_consumer""#)
        let varzBefore = EndToEndProbes.varz(port: monitor)
        let natsCPUBefore = Machine.cpuSeconds(pid: env.nats.pid)
        let benchCPUBefore = Machine.cpuSeconds()
        let servicesCPUBefore = servicePIDs.reduce(0) { $0 + Machine.cpuSeconds(pid: $1) }
        let closedBefore = fleet.counters.closedByServer.load(ordering: .relaxed)

        let phases = PipelinePhases(env: env, workload: workload, fetchBatch: fetchBatch, warmupNs: warmupNs)
        let paced = try phases.pacedPublish(rate: rate, seconds: seconds, salt: design.salt, tag: design.tag) { start in
            let from = start + warmupNs
            fleet.setRecordFrom(from)
            tapRecorder.recordFromNs.store(from, ordering: .relaxed)
            baseline?.setRecordFrom(from)
        }
        let publishStart = pipelineNowNs() - UInt64(Double(paced.sent) / max(1, paced.achievedRate) * 1e9)
        outcome.sent = paced.sent
        outcome.achievedRate = paced.achievedRate
        outcome.maxBehindMs = paced.maxBehindMs

        var expected = 0, expectedInstances = 0
        outcome.bucketEvents = [Int](repeating: 0, count: Self.bucketBounds.count)
        for index in 0..<paced.sent {
            let channel = workload.channel(ofEvent: index, salt: design.salt)
            expected += design == .perChannel ? workload.deliveries[channel] : workload.recipients[channel]
            expectedInstances += workload.deliveries[channel]
            outcome.bucketEvents[Self.bucket(ofSize: workload.members[channel].count)] += 1
        }
        outcome.expected = expected
        outcome.expectedInstanceDeliveries = expectedInstances
        outcome.inboxExpected = expectedInstances

        outcome.drained = env.waitDrained(prefix: consumerPrefix, timeout: .seconds(180))
        // Everything is acked, so every message is on its way; wait for the receivers
        // (until complete, or 2 s without progress, at most 60 s).
        let receivedNow: () -> Int = {
            design == .switchboard ? fleet.received : (baseline?.received ?? 0)
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var lastSeen = -1, lastProgress = ContinuousClock.now, lastChangeNs = pipelineNowNs()
        while ContinuousClock.now < deadline {
            let seen = receivedNow()
            if seen != lastSeen { lastSeen = seen; lastProgress = ContinuousClock.now; lastChangeNs = pipelineNowNs() }
            if seen >= expected || ContinuousClock.now - lastProgress > .seconds(2) { break }
            usleep(20_000)
        }
        usleep(200_000)
        outcome.receiveSeconds = Double(lastChangeNs - publishStart) / 1e9

        let varzAfter = EndToEndProbes.varz(port: monitor)
        outcome.notifierFrames = notifierCounters("switchboard_notifier_frames_written_total", "") - framesBefore
        outcome.notifierDropped = notifierCounters("switchboard_notifier_dropped_deliveries_total", "") - droppedBefore
        outcome.notifierDroppedClosing = notifierCounters("switchboard_notifier_dropped_deliveries_total", #"reason="closing""#) - droppedClosingBefore
        outcome.notifierSlowConsumerCloses = notifierCounters("switchboard_notifier_closes_total", #"reason="slow_consumer""#) - slowClosesBefore
        outcome.natsCPU = Machine.cpuSeconds(pid: env.nats.pid) - natsCPUBefore
        outcome.benchCPU = Machine.cpuSeconds() - benchCPUBefore
        outcome.servicesCPU = servicePIDs.reduce(0) { $0 + Machine.cpuSeconds(pid: $1) } - servicesCPUBefore
        outcome.socketsClosed = fleet.counters.closedByServer.load(ordering: .relaxed) - closedBefore
        outcome.closedHeartbeat = fleet.counters.closedHeartbeat.load(ordering: .relaxed)
        outcome.closedSlowConsumer = fleet.counters.closedSlowConsumer.load(ordering: .relaxed)
        if let varzBefore, let varzAfter {
            outcome.varzIn = varzAfter.inMsgs - varzBefore.inMsgs
            outcome.varzOut = varzAfter.outMsgs - varzBefore.outMsgs
        }

        switch design {
        case .switchboard:
            tap?.unsubscribe()
            let merged = EndToEndRecorder.merge(fleet.quiescedRecorders(), events: paced.sent)
            outcome.receivers = merged
            (outcome.lost, outcome.unexpected) = Self.losses(merged.counts, expected: { workload.recipients[workload.channel(ofEvent: $0, salt: design.salt)] })
            usleep(100_000)
            let inbox = EndToEndRecorder.merge([tapRecorder], events: paced.sent)
            outcome.inbox = inbox
            outcome.inboxLost = Self.losses(inbox.counts, expected: { workload.deliveries[workload.channel(ofEvent: $0, salt: design.salt)] }).lost
            let deliveriesAfter = fanoutPort.flatMap { EndToEndProbes.counter(port: $0, metric: "switchboard_fanout_deliveries_total") } ?? 0
            outcome.hopPublished = Int(deliveriesAfter - deliveriesBefore)
            // One inbox subscription per instance: each delivery reaches exactly one notifier.
            outcome.hopDelivered = outcome.hopPublished
            // The tap received every delivery once more; that is the bench's, not the design's.
            outcome.varzOut -= inbox.receipts + Int(tap?.droppedMessages ?? 0)
            outcome.bucketMessages = bucketSums(inbox.counts, salt: design.salt)
        case .perUser, .perChannel:
            baseline?.stop()
            let merged = EndToEndRecorder.merge(baseline?.recorders ?? [], events: paced.sent)
            outcome.receivers = merged
            let perChannel = design == .perChannel
            (outcome.lost, outcome.unexpected) = Self.losses(merged.counts, expected: {
                let channel = workload.channel(ofEvent: $0, salt: design.salt)
                return perChannel ? workload.deliveries[channel] : workload.recipients[channel]
            })
            outcome.hopPublished = relay?.published.load(ordering: .relaxed) ?? 0
            outcome.hopDelivered = merged.receipts
            outcome.relayErrors = relay?.errors.load(ordering: .relaxed) ?? 0
            outcome.bucketMessages = bucketSums(merged.counts, salt: design.salt)
        }
        return outcome
    }

    /// Messages received per channel-size bucket (each event's count added to its channel's bucket).
    private func bucketSums(_ counts: [Int], salt: UInt64) -> [Int] {
        var sums = [Int](repeating: 0, count: Self.bucketBounds.count)
        for (index, count) in counts.enumerated() {
            sums[Self.bucket(ofSize: workload.members[workload.channel(ofEvent: index, salt: salt)].count)] += count
        }
        return sums
    }

    /// Events received fewer times than expected (summed shortfall) and more (summed excess).
    static func losses(_ counts: [Int], expected: (Int) -> Int) -> (lost: Int, unexpected: Int) {
        var lost = 0, extra = 0
        for (index, got) in counts.enumerated() {
            let want = expected(index)
            if got < want { lost += want - got } else if got > want { extra += got - want }
        }
        return (lost, extra)
    }
}
