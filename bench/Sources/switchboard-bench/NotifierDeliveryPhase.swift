import Foundation
import NotifierService
import RoutingCore
import SwitchboardContracts
import SwitchboardProto

/// Phase 2 of `switchboard-bench notifier`: socket writes per second when one `Delivery`
/// covers every connected user. The bench plays the fan-out: it reads each user's slot from
/// `presence:<instance>` and publishes Deliveries to `notify.inbox.<instance>`; the clients
/// count the event frames. Writes/s = frames received by all clients ÷ (first publish → last
/// frame). The notifier's `/metrics` counters are read before and after as a cross-check.
struct NotifierDeliveryPhase {
    /// One configuration of users and sockets, measured.
    struct Run {
        var label: String
        var users, sockets, frameBytes, deliveryBytes: Int
        /// Events published in the run (warm-up, single events and bursts).
        var events: Int
        /// publish → last frame of single events, ms.
        var singleEventMs: [Double]
        /// Writes/s of each burst.
        var burstRates: [Double]
        /// Frames of all bursts ÷ their summed elapsed times.
        var burstRate: Double
        var burstEvents: Int
        /// CPU seconds used during the bursts (from the first to the last) by the notifier
        /// and by this process (the clients and the publisher).
        var notifierCPUSeconds, benchCPUSeconds, burstWallSeconds: Double
        /// Every socket's event-frame count (expected: `events` each).
        var perSocketMin, perSocketMax: Int
        var complete: Bool
        var deliveriesIn, framesWritten, droppedNoSocket, droppedClosing, undecodable: Double
        var closedByServer: Int
    }

    let env: PipelineEnvironment
    let notifierPath: String
    let secretFile: URL
    let tokens: [(user: String, token: String)]
    let options: NotifierBench.Tuning

    static let channelID = "bench-channel"

    /// Bytes of the JSON event frame the notifier renders for one of the bench's events.
    static func frameBytes(textBytes: Int, seq: UInt64) -> Int {
        let sample = ChatEvent(eventID: "bench-event-\(seq)", channelID: channelID, senderID: "bench-sender",
                               createdAtMs: Int64(Date().timeIntervalSince1970 * 1000),
                               body: .messageCreated(messageID: "m\(seq)", text: String(repeating: "x", count: textBytes)))
        return ServerFrame.event(channel: channelID, seq: seq, prev: seq - 1, epoch: StreamEpoch.of(createdNs: Int64(Date().timeIntervalSince1970 * 1e9)), event: sample).count
    }

    func run(users: Int, secondDeviceUsers: Int, bursts: Int, eventsPerBurst: Int, singleEvents: Int, textBytes: Int) throws -> [Run] {
        let notifier = try NotifierInstance(executable: notifierPath, instanceID: "bench-notifier", env: env, secretFile: secretFile,
                                            maxConnections: users + secondDeviceUsers + 16, eventLoopThreads: options.notifierThreads)
        defer { notifier.stop() }
        try notifier.waitReady()
        // Source addresses of their own: the memory phase's sockets are in TIME_WAIT on its.
        let fleet = NotifierClientFleet(threads: options.clientThreads, port: Int(notifier.port), socketsPerAddress: options.socketsPerAddress,
                                        firstAddressBlock: 126)
        defer { fleet.shutdown() }

        let opened = fleet.open(Array(tokens[0..<users]), concurrency: options.connectConcurrency)
        guard opened.failed == 0 else {
            throw PipelineError.setup("\(opened.failed) of \(users) sockets failed to open: \(opened.firstError ?? "?")")
        }
        try notifier.waitPresence(users: users)
        let presence = try notifier.presenceSlots()
        let slots = tokens[0..<users].compactMap { presence[$0.user] }
        guard slots.count == users else { throw PipelineError.setup("\(PresenceKeys.users(instance: notifier.instanceID)) has slots for \(slots.count) of \(users) users") }
        print(String(format: "%d users connected in %.1f s; slots read from presence:%@", users, opened.seconds, notifier.instanceID))

        var sequence: UInt64 = 0
        var runs: [Run] = []
        runs.append(try measure(label: "\(users) users × 1 socket", users: users, fleet: fleet, notifier: notifier, slots: slots, sequence: &sequence,
                                bursts: bursts, eventsPerBurst: eventsPerBurst, singleEvents: singleEvents, textBytes: textBytes))
        if secondDeviceUsers > 0 {
            let second = fleet.open(Array(tokens[0..<secondDeviceUsers]), concurrency: options.connectConcurrency)
            guard second.failed == 0 else {
                throw PipelineError.setup("\(second.failed) second-device sockets failed to open: \(second.firstError ?? "?")")
            }
            runs.append(try measure(label: "\(users) users, \(secondDeviceUsers) of them on 2 devices", users: users, fleet: fleet, notifier: notifier,
                                    slots: slots, sequence: &sequence, bursts: bursts, eventsPerBurst: eventsPerBurst,
                                    singleEvents: singleEvents, textBytes: textBytes))
        }
        return runs
    }

    private func measure(label: String, users: Int, fleet: NotifierClientFleet, notifier: NotifierInstance, slots: [UInt32], sequence: inout UInt64,
                         bursts: Int, eventsPerBurst: Int, singleEvents: Int, textBytes: Int) throws -> Run {
        print("\n# delivery: \(label) (\(fleet.count) sockets), one Delivery with \(slots.count) slots per event")
        let sockets = fleet.count
        let inbox = Subjects.inbox(instance: notifier.instanceID)
        let text = String(repeating: "x", count: textBytes)
        func payloads(_ count: Int) -> [[UInt8]] {
            (0..<count).map { _ in
                sequence += 1
                let event = ChatEvent(eventID: "bench-event-\(sequence)", channelID: Self.channelID, senderID: "bench-sender",
                                      createdAtMs: Int64(Date().timeIntervalSince1970 * 1000), body: .messageCreated(messageID: "m\(sequence)", text: text))
                return Deliveries(epoch: "", deliveries: [Delivery(streamSeq: sequence, channelID: Self.channelID, event: event.encoded(), slots: slots)]).encoded()
            }
        }
        let frameBytes = Self.frameBytes(textBytes: textBytes, seq: sequence + 1)
        let deliveryBytes = payloads(1)[0].count

        /// Publishes `batch`, flushes, waits for `batch.count × sockets` frames; the time
        /// from the first publish to the last frame, or nil when frames are missing.
        func deliver(_ batch: [[UInt8]]) throws -> UInt64? {
            let expected = fleet.sink.messages.load(ordering: .relaxed) + batch.count * sockets
            let started = pipelineNowNs()
            for payload in batch { try env.publisher.publish(inbox, payload: payload) }
            try env.publisher.flush(timeout: .seconds(10))
            let deadline = ContinuousClock.now + .seconds(30)
            while fleet.sink.messages.load(ordering: .relaxed) < expected {
                if ContinuousClock.now > deadline { return nil }
                usleep(200)
            }
            return fleet.sink.lastReceiveNs.load(ordering: .relaxed) - started
        }

        fleet.resetEventCounts()
        let before = try notifier.metrics()
        var events = 0
        var complete = true
        var singles: [Double] = []
        var rates: [Double] = []
        var burstFrames = 0
        var burstNs: UInt64 = 0
        var cpuAtBursts: (notifier: Double, bench: Double, wall: ContinuousClock.Instant)?
        var cpuAfterBursts: (notifier: Double, bench: Double, wall: ContinuousClock.Instant)?
        // Warm-up: the first event pays for lazily created buffers on every path.
        events += 1
        complete = try deliver(payloads(1)) != nil
        for _ in 0..<singleEvents where complete {
            usleep(100_000)
            events += 1
            guard let ns = try deliver(payloads(1)) else { complete = false; break }
            singles.append(Double(ns) / 1e6)
        }
        for _ in 0..<bursts where complete {
            usleep(200_000)
            let batch = payloads(eventsPerBurst)
            if cpuAtBursts == nil { cpuAtBursts = (notifier.cpuSeconds, Machine.cpuSeconds(), .now) }
            events += batch.count
            guard let ns = try deliver(batch) else { complete = false; break }
            rates.append(Double(batch.count * sockets) / (Double(ns) / 1e9))
            burstFrames += batch.count * sockets
            burstNs += ns
            cpuAfterBursts = (notifier.cpuSeconds, Machine.cpuSeconds(), .now)
        }
        if !complete { usleep(2_000_000) }
        // The loops count frames written right after writing them; give the last ones a moment.
        usleep(300_000)
        let after = try notifier.metrics()
        let (low, high) = fleet.eventCountRange()
        func delta(_ name: String, _ label: String? = nil) -> Double { after.value(name, label: label) - before.value(name, label: label) }
        let run = Run(
            label: label, users: users, sockets: sockets, frameBytes: frameBytes, deliveryBytes: deliveryBytes, events: events,
            singleEventMs: singles, burstRates: rates, burstRate: burstNs > 0 ? Double(burstFrames) / (Double(burstNs) / 1e9) : 0,
            burstEvents: rates.count * eventsPerBurst,
            notifierCPUSeconds: (cpuAfterBursts?.notifier ?? 0) - (cpuAtBursts?.notifier ?? 0),
            benchCPUSeconds: (cpuAfterBursts?.bench ?? 0) - (cpuAtBursts?.bench ?? 0),
            burstWallSeconds: cpuAtBursts.flatMap { start in cpuAfterBursts.map { ($0.wall - start.wall).seconds } } ?? 0,
            perSocketMin: low, perSocketMax: high, complete: complete,
            deliveriesIn: delta("switchboard_notifier_deliveries_in_total"),
            framesWritten: delta("switchboard_notifier_frames_written_total"),
            droppedNoSocket: delta("switchboard_notifier_dropped_deliveries_total", #"reason="no_socket""#),
            droppedClosing: delta("switchboard_notifier_dropped_deliveries_total", #"reason="closing""#),
            undecodable: delta("switchboard_notifier_undecodable_inbox_messages_total"),
            closedByServer: fleet.closedByServer
        )
        print(NotifierReport.deliverySummary(run))
        return run
    }
}
