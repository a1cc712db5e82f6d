import ArgumentParser
import Foundation
import Histogram
import NATSClient
import SwitchboardContracts
import SwitchboardHarness
import SwitchboardProto
import Synchronization

/// `switchboard-bench failover`: two fan-out replicas on the same partitions (one active, one
/// warm standby), chat events at a fixed rate, the active one killed (SIGKILL or SIGSTOP)
/// mid-run. Reports the time from the kill to the first delivery of an event published after
/// it (only the standby can make that one), how many events were delayed, latency before and
/// around the kill, losses, duplicates, and what the standby cost while it stood by.
struct FailoverBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "failover", abstract: "Fan-out takeover by a warm standby, under traffic.")

    @Option(help: "Events per second.") var rate = 1_000
    @Option(help: "Seconds of traffic before the kill.") var before = 5.0
    @Option(help: "Seconds of traffic after the kill.") var after = 8.0
    @Option(help: "How the active replica is taken out: kill (SIGKILL) or stop (SIGSTOP).") var signal = "kill"
    @Option(help: "Rounds (a fresh deployment each).") var rounds = 3
    @Option(help: "Path of the fanout executable (default: the root package's release build).") var fanoutPath: String?
    @Option(help: "Folder with streams/*.json.") var streamsDir = "streams"
    @OptionGroup var workloadOptions: WorkloadOptions

    func validate() throws {
        guard rate > 0, before >= 1, after >= 3, rounds > 0 else { throw ValidationError("rate, rounds positive; before ≥ 1 s, after ≥ 3 s") }
        guard ["kill", "stop"].contains(signal) else { throw ValidationError("--signal is kill or stop") }
    }

    func run() throws {
        _ = RunHeader.begin("failover")
        let executable = fanoutPath ?? ServiceExecutables.path("fanout")
        print("nats-server: \(NATSServerBinary.path) · fanout: \(executable) · \(rate) ev/s, \(signal) after \(before) s, \(after) s more")
        print("| round | kill → first delivery of a newer event | kill → any delivery | events delayed > 50 ms / > 500 ms | p99 before | p99 kill −1 s … +5 s | max | lost | duplicates | standby CPU ÷ active CPU (before) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for round in 1...rounds { print(try runRound(round, executable: executable)) }
    }

    private func runRound(_ round: Int, executable: String) throws -> String {
        let partitionCount = 16
        let env = try PipelineEnvironment(partitionCount: partitionCount, keepLogs: false)
        defer { env.stop() }
        let definitions = try StreamDefinitions(directory: streamsDir)
        _ = try definitions.apply(subjectTransforms: env.jetStream.serverSupportsStreamSubjectTransforms()) { try env.jetStream.applyStream(configJSON: $0) }
        let workload = workloadOptions.workload(onlineFraction: 1.0, instances: 2, partitionCount: partitionCount)
        try env.loadMembership(workload)
        try env.registerPresence(workload)
        let a = try env.startReplica(name: "fanout-a", executable: executable, streamsDir: streamsDir)
        defer { a.stop(grace: .seconds(5)) }
        let b = try env.startReplica(name: "fanout-b", executable: executable, streamsDir: streamsDir)
        defer { b.stop(grace: .seconds(5)) }
        let active = try activeReplica(env)
        let (victim, standby) = active == "fanout-a" ? (a, b) : (b, a)

        let received = FailoverReceipts()
        let subscription = try env.subscriber.subscribe(Subjects.allInboxes) { message in
            let now = pipelineNowNs()
            for delivery in (try? Deliveries(decoding: message.payload).deliveries) ?? [] { received.add(delivery, instance: message.subject, at: now) }
        }
        defer { subscription.unsubscribe() }

        let cpuStart = PeerProcSample.take([.init(name: "active", pid: victim.pid), .init(name: "standby", pid: standby.pid)])
        var published: [(seq: UInt64, at: UInt64)] = []
        let startNs = pipelineNowNs()
        let interval = 1_000_000_000 / UInt64(rate)
        let killAtNs = startNs + UInt64(before * 1e9)
        let endNs = killAtNs + UInt64(after * 1e9)
        var cpuBeforeKill: PeerProcSample?
        var index = 0
        while true {
            let due = startNs + UInt64(index) * interval
            if due >= endNs { break }
            while pipelineNowNs() < due { usleep(100) }
            if cpuBeforeKill == nil, due >= killAtNs {
                cpuBeforeKill = PeerProcSample.take([.init(name: "active", pid: victim.pid), .init(name: "standby", pid: standby.pid)])
                victim.send(signal == "kill" ? SIGKILL : SIGSTOP)
            }
            let channel = index % workload.channelIDs.count
            let sentNs = pipelineNowNs()
            let event = ChatEvent(eventID: "f\(round)-\(index)", channelID: workload.channelIDs[channel], senderID: "bench", createdAtMs: 1,
                                  body: .messageCreated(messageID: "f\(round)-\(index)", text: "\(sentNs)"))
            let ack = try env.jetStream.publish(workload.eventSubjects[channel], payload: event.encoded(), timeout: .seconds(5))
            published.append((ack.sequence, sentNs))
            index += 1
        }
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline, received.distinctSeqs < published.count { usleep(50_000) }
        if signal == "stop" { victim.send(SIGCONT) }
        return received.report(round: round, published: published, killAtNs: killAtNs, cpuStart: cpuStart, cpuBeforeKill: cpuBeforeKill)
    }

    /// The replica that reports every partition active (within 10 s).
    private func activeReplica(_ env: PipelineEnvironment) throws -> String {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let inbox = env.publisher.newInbox()
            let replies = try env.publisher.subscribeSync(inbox)
            try env.publisher.publish(Inspection.statsSubject, payload: [], reply: inbox)
            var seen: [String: [Int]] = [:]
            while let message = try? replies.nextMessage(timeout: .milliseconds(300)) {
                if let stats = try? JSONDecoder().decode(Inspection.Stats.self, from: Data(message.payload)) { seen[stats.replica.id] = stats.replica.activePartitions ?? [] }
            }
            replies.unsubscribe()
            if seen.count == 2, let active = seen.first(where: { $0.value.count == 16 })?.key, seen.values.contains([]) { return active }
            usleep(200_000)
        }
        throw ValidationError("no replica became active for all 16 partitions with the other standing by")
    }
}

/// What the bench's inbox subscriber saw: per delivered stream sequence its first arrival and
/// latency (send instant in the event text), and how many deliveries repeated one.
final class FailoverReceipts: Sendable {
    private struct State {
        var first: [UInt64: (at: UInt64, latency: UInt64)] = [:]
        var deliveries = 0
        var seen = Set<String>()
        var duplicates = 0
    }
    private let state = Mutex(State())

    func add(_ delivery: Delivery, instance: String, at now: UInt64) {
        let sent = (try? ChatEvent(decoding: delivery.event)).flatMap { event -> UInt64? in
            if case .messageCreated(_, let text) = event.body { return UInt64(text) }
            return nil
        }
        state.withLock { state in
            state.deliveries += 1
            // One delivery per (event, instance) is expected; more are duplicates.
            if !state.seen.insert("\(instance) \(delivery.streamSeq)").inserted { state.duplicates += 1 }
            if state.first[delivery.streamSeq] == nil { state.first[delivery.streamSeq] = (now, sent.map { now &- $0 } ?? 0) }
        }
    }

    var distinctSeqs: Int { state.withLock { $0.first.count } }

    func report(round: Int, published: [(seq: UInt64, at: UInt64)], killAtNs: UInt64, cpuStart: PeerProcSample, cpuBeforeKill: PeerProcSample?) -> String {
        let snapshot = state.withLock { $0 }
        var beforeKill = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)
        var aroundKill = beforeKill
        var delayed50 = 0, delayed500 = 0, lost = 0
        var firstNewer: UInt64?
        var firstAny: UInt64?
        for event in published {
            guard let receipt = snapshot.first[event.seq] else { lost += 1; continue }
            if receipt.latency > 50_000_000 { delayed50 += 1 }
            if receipt.latency > 500_000_000 { delayed500 += 1 }
            if event.at < killAtNs { beforeKill.record(receipt.latency) }
            if event.at + 1_000_000_000 >= killAtNs, event.at <= killAtNs + 5_000_000_000 { aroundKill.record(receipt.latency) }
            if event.at > killAtNs { firstNewer = min(firstNewer ?? .max, receipt.at) }
            if receipt.at > killAtNs { firstAny = min(firstAny ?? .max, receipt.at) }
        }
        func ms(_ ns: UInt64?) -> String { ns.map { String(format: "%.1f ms", Double($0) / 1e6) } ?? "-" }
        var ratio = "-"
        if let cpuBeforeKill {
            let active = cpuBeforeKill.cpuSeconds[0] - cpuStart.cpuSeconds[0], standby = cpuBeforeKill.cpuSeconds[1] - cpuStart.cpuSeconds[1]
            ratio = active > 0 ? String(format: "%.2f (%.2f / %.2f CPU-s)", standby / active, standby, active) : "-"
        }
        return "| \(round) | \(ms(firstNewer.map { $0 - killAtNs })) | \(ms(firstAny.map { $0 - killAtNs })) | \(delayed50) / \(delayed500) | "
            + "\(ms(beforeKill.valueAtPercentile(99))) | \(ms(aroundKill.valueAtPercentile(99))) | \(ms(aroundKill.max)) | \(lost) | \(snapshot.duplicates) | \(ratio) |"
    }
}
