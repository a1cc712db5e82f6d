import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one point (system × workload × rate) measured.
struct PeerPointResult: Sendable {
    var system: String
    var workload: PeerWorkload
    var rate: Double
    /// Events published per second over the measured window (the pacer may fall behind).
    var publishedRate: Double
    var offeredFramesPerSecond: Double { rate * Double(workload.membersPerChannel) }
    /// Frames received over the measured window, per second.
    var deliveredFramesPerSecond: Double
    var framesInWindow: Int
    var eventsInWindow: Int
    var expected: Int
    var lost: Int
    var duplicates: Int
    var orderViolations: Int
    var stale: Int
    var misrouted: Int
    var publishFailures: Int
    var p50Ns: UInt64
    var p99Ns: UInt64
    var maxNs: UInt64
    var latencySamples: UInt64
    /// From the last publish to the last frame.
    var drainSeconds: Double
    /// Server process names and their CPU seconds over the window.
    var processCPU: [(name: String, seconds: Double)]
    var contextSwitches: Int
    var clientCPUSeconds: Double
    var windowSeconds: Double

    var serverCPUSeconds: Double { processCPU.reduce(0) { $0 + $1.seconds } }
    /// Server CPU seconds per 1 000 delivered frames.
    var cpuPerThousandFrames: Double { framesInWindow > 0 ? serverCPUSeconds / Double(framesInWindow) * 1000 : .nan }
    var contextSwitchesPerEvent: Double { eventsInWindow > 0 ? Double(contextSwitches) / Double(eventsInWindow) : .nan }
    var clientCorePercent: Double { windowSeconds > 0 ? clientCPUSeconds / windowSeconds * 100 : 0 }

    /// Why the point is not a sustained one, or nil: the publisher fell behind, fewer frames
    /// than offered arrived in the window, frames were lost, p99 went over a second (a backlog
    /// grows), or the backlog took over 2 s to drain.
    var saturation: String? {
        var reasons: [String] = []
        if publishedRate < rate * 0.97 { reasons.append(String(format: "publisher reached %.0f ev/s", publishedRate)) }
        if deliveredFramesPerSecond < offeredFramesPerSecond * 0.95 {
            reasons.append(String(format: "delivered %.0f%% of offered", deliveredFramesPerSecond / offeredFramesPerSecond * 100))
        }
        if lost > 0 { reasons.append("lost \(lost)") }
        if p99Ns > 1_000_000_000 { reasons.append("p99 over 1 s") }
        if drainSeconds > 2 { reasons.append(String(format: "drained in %.1f s", drainSeconds)) }
        return reasons.isEmpty ? nil : reasons.joined(separator: ", ")
    }
}

/// Runs points: paces a system's publisher at a fixed rate, samples the server processes and the
/// client at the end of the warm-up and at the last publish, waits for the frames to drain, and
/// reads the load client's books.
struct PeerPointRunner {
    var warmupSeconds: Double
    var seconds: Double
    /// Drain ends after this long without a new frame (or when every frame arrived).
    var quietSeconds: Double = 2
    var maxDrainSeconds: Double = 60

    func run(point: UInt32, rate: Double, workload: PeerWorkload, system: any PeerSystem, client: PeerLoadClient) throws -> PeerPointResult {
        let schedule = PeerSchedule(point: point, rate: rate, total: Int(rate * (warmupSeconds + seconds)), channels: workload.channelCount)
        let startNs = pipelineNowNs() + 5_000_000
        let windowStartNs = startNs + UInt64(warmupSeconds * 1e9)
        client.begin(PeerPointRecorder(
            point: point, startNs: startNs, latencyFromNs: windowStartNs,
            socketChannel: (0..<workload.sockets).map { Int32(workload.channel(ofSocket: $0)) },
            eventsPerChannel: schedule.eventsPerChannel, horizonSeconds: warmupSeconds + seconds + maxDrainSeconds + 10
        ))
        let processes = system.serverProcesses()
        var before: PeerProcSample?
        var clientBefore = 0.0
        var eventsBefore = 0
        var published = 0
        let interval = 1e9 / rate
        while published < schedule.total {
            let now = pipelineNowNs()
            if now < startNs {
                usleep(UInt32((startNs - now) / 1000))
                continue
            }
            if before == nil && now >= windowStartNs {
                before = PeerProcSample.take(processes)
                clientBefore = client.cpuSeconds
                eventsBefore = published
            }
            let due = min(schedule.total, Int(Double(now - startNs) / interval) + 1)
            if due > published {
                let events = (published..<due).map {
                    PeerEvent(point: point, index: $0, channel: schedule.channel(ofEvent: $0), number: schedule.number(ofEvent: $0), sentNs: now)
                }
                try system.publisher.publish(events, workload: workload)
                published = due
            }
            let next = startNs + UInt64(Double(published) * interval)
            let after = pipelineNowNs()
            if next > after + 50_000 { usleep(UInt32(min(1_000, (next - after) / 1000))) }
        }
        let endNs = pipelineNowNs()
        let after = PeerProcSample.take(processes)
        let clientAfter = client.cpuSeconds
        let start = before ?? after
        let publishFailures = try system.publisher.finish(timeout: .seconds(30))
        drain(client: client, expected: (0..<workload.sockets).reduce(0) { $0 + schedule.eventsPerChannel[workload.channel(ofSocket: $1)] })
        guard let books = client.end() else { throw PeerBenchError.setup("the load client lost its books") }
        let window = Double(endNs - windowStartNs) / 1e9
        let frames = books.received(from: windowStartNs, to: endNs)
        let histogram = books.histogram
        return PeerPointResult(
            system: system.name, workload: workload, rate: rate,
            // The window spans from its first publish to its last: one interval short of the events.
            publishedRate: window > 0 ? Double(schedule.total - eventsBefore) / (window + 1 / rate) : 0,
            deliveredFramesPerSecond: window > 0 ? Double(frames) / window : 0,
            framesInWindow: frames, eventsInWindow: schedule.total - eventsBefore,
            expected: books.expected, lost: books.lost, duplicates: books.duplicates, orderViolations: books.orderViolations,
            stale: books.stale, misrouted: books.misrouted, publishFailures: publishFailures,
            p50Ns: histogram.totalCount > 0 ? histogram.valueAtPercentile(50) : 0,
            p99Ns: histogram.totalCount > 0 ? histogram.valueAtPercentile(99) : 0,
            maxNs: histogram.totalCount > 0 ? histogram.max : 0, latencySamples: histogram.totalCount,
            drainSeconds: books.lastReceivedNs > endNs ? Double(books.lastReceivedNs - endNs) / 1e9 : 0,
            processCPU: zip(processes, zip(start.cpuSeconds, after.cpuSeconds)).map { pair in (name: pair.0.name, seconds: pair.1.1 - pair.1.0) },
            contextSwitches: zip(start.contextSwitches, after.contextSwitches).reduce(0) { sum, pair in sum + pair.1 - pair.0 },
            clientCPUSeconds: clientAfter - clientBefore, windowSeconds: window
        )
    }

    /// Waits until `expected` distinct frames arrived, or none came for `quietSeconds`, or
    /// `maxDrainSeconds` passed.
    private func drain(client: PeerLoadClient, expected: Int) {
        let deadline = ContinuousClock.now + .seconds(maxDrainSeconds)
        var lastCount = -1
        var lastChange = ContinuousClock.now
        while ContinuousClock.now < deadline {
            let (distinct, _) = client.progress
            if distinct >= expected { return }
            if distinct != lastCount {
                lastCount = distinct
                lastChange = ContinuousClock.now
            } else if ContinuousClock.now - lastChange > .seconds(quietSeconds) {
                return
            }
            usleep(20_000)
        }
    }
}
