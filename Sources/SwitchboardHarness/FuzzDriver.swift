import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

// A seeded, time-boxed mutation fuzzer for the decoders that read bytes from the network.
//
// Reproducible: every input is a pure function of (seed, target name, iteration), the seed is
// printed with every run, and `SWITCHBOARD_FUZZ_SEED` replays it. A decoder that *traps*
// cannot be caught by a test, so while an input is being decoded it sits in a crash slot that
// a signal handler prints (target, seed, iteration, input in hex) before the process dies.
// `SWITCHBOARD_FUZZ_SECONDS` sets each target's time box (default 1 s, so that the dozen
// targets stay under ~20 s of CI) for longer local runs.

/// The fuzzers' generator: SplitMix64, tiny, fast, and fully determined by its seed.
public typealias FuzzRandom = SplitMix64

extension SplitMix64 {
    /// True one time in `oneIn`.
    public mutating func chance(_ oneIn: UInt64) -> Bool { next() % oneIn == 0 }
}

/// What a decoder made of one input. A decoder that returns or throws its typed error is
/// fine; `.violation` is a property the decoded value broke (it is reported with the input).
public enum FuzzOutcome: Sendable, Equatable {
    case accepted
    case rejected
    case violation(String)
}

/// Numbers of one fuzz run, printed and returned to the test.
public struct FuzzReport: Sendable, CustomStringConvertible {
    public var target: String
    public var seed: UInt64
    public var iterations = 0
    public var accepted = 0
    public var rejected = 0
    public var violations = 0
    public var seconds = 0.0
    /// Resident set growth from start to end of the run (whole process: other tests count too).
    public var residentGrowthBytes = 0

    public var description: String {
        "fuzz \(target): seed=0x\(String(seed, radix: 16)) iterations=\(iterations) accepted=\(accepted) rejected=\(rejected) "
            + "violations=\(violations) seconds=\(String(format: "%.2f", seconds)) rss_growth_kb=\(residentGrowthBytes / 1024)"
    }
}

/// Byte-level mutations of valid encodings.
public enum FuzzMutator {
    /// Bytes that tend to sit on boundaries: zero, varint continuation, sign bits, all ones.
    public static let interesting: [UInt8] = [0x00, 0x01, 0x7f, 0x80, 0x81, 0xfe, 0xff, 0x0a, 0x12, 0x22, 0x08]
    /// Varints claiming huge lengths or values (2^63-ish, 2^32-1, 2^31).
    public static let hugeVarints: [[UInt8]] = [
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        [0xff, 0xff, 0xff, 0xff, 0x0f],
        [0x80, 0x80, 0x80, 0x80, 0x08],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ]

    /// Applies 1–4 random mutations to `input` (`corpus` feeds splices).
    public static func mutate(_ input: [UInt8], corpus: [[UInt8]], using random: inout FuzzRandom) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + Int(random.next() % 4)) { mutateOnce(&bytes, corpus: corpus, using: &random) }
        return bytes
    }

    public static func mutateOnce(_ bytes: inout [UInt8], corpus: [[UInt8]], using random: inout FuzzRandom) {
        let position = bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count))
        switch random.next() % 11 {
        case 0 where !bytes.isEmpty:  // bit flip
            bytes[position] ^= UInt8(1) << UInt8(random.next() % 8)
        case 1:  // truncation
            bytes.removeSubrange(position...)
        case 2:  // insertion of random bytes
            bytes.insert(contentsOf: randomBytes(1 + Int(random.next() % 8), using: &random), at: position)
        case 3 where !bytes.isEmpty:  // deletion of a range
            bytes.removeSubrange(position..<min(bytes.count, position + 1 + Int(random.next() % 8)))
        case 4 where !bytes.isEmpty:  // an interesting byte
            bytes[position] = interesting[Int(random.next() % UInt64(interesting.count))]
        case 5:  // a huge varint over what was there (length fields, counts, enum values)
            let varint = hugeVarints[Int(random.next() % UInt64(hugeVarints.count))]
            bytes.replaceSubrange(position..<min(bytes.count, position + Int(random.next() % 3)), with: varint)
        case 6 where !bytes.isEmpty:  // a duplicated slice (repeated fields, repeated headers)
            let end = min(bytes.count, position + 1 + Int(random.next() % 32))
            bytes.insert(contentsOf: bytes[position..<end], at: end)
        case 7 where !corpus.isEmpty:  // splice with another valid input
            let other = corpus[Int(random.next() % UInt64(corpus.count))]
            let cut = other.isEmpty ? 0 : Int(random.next() % UInt64(other.count))
            bytes = Array(bytes[..<position]) + other[cut...]
        case 8:  // random bytes altogether
            bytes = randomBytes(Int(random.next() % 128), using: &random)
        case 9 where !bytes.isEmpty:  // invalid UTF-8 inside a string
            bytes.insert(contentsOf: [[0xc3], [0xff], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]][Int(random.next() % 5)], at: position)
        default:  // a run of one byte (padding, zero-filled buffers)
            bytes.insert(contentsOf: repeatElement(interesting[Int(random.next() % UInt64(interesting.count))], count: 1 + Int(random.next() % 64)), at: position)
        }
    }

    public static func randomBytes(_ count: Int, using random: inout FuzzRandom) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }
}

/// Runs a decoder over mutated inputs for a time box.
public enum FuzzDriver {
    /// `SWITCHBOARD_FUZZ_SEED` (decimal or 0x-hex) or a fresh random seed.
    public static let baseSeed: UInt64 = {
        if let text = ProcessInfo.processInfo.environment["SWITCHBOARD_FUZZ_SEED"] {
            let parsed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
            if let parsed { return parsed }
        }
        return UInt64.random(in: 1...UInt64.max)
    }()

    /// Seconds per target: `SWITCHBOARD_FUZZ_SECONDS` or 1.
    public static var seconds: Double {
        ProcessInfo.processInfo.environment["SWITCHBOARD_FUZZ_SECONDS"].flatMap(Double.init) ?? 1.0
    }

    /// The seed of one target: the base seed mixed with the target's name, so targets differ.
    public static func seed(for target: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in target.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return baseSeed ^ hash
    }

    /// Feeds `body` the corpus as is, then mutations of it (or what `generate` makes) until
    /// the time box ends. `body` decodes and classifies; violations are collected with their
    /// input in hex (at most 5 kept) so the test can report them.
    public static func run(
        _ target: String,
        corpus: [[UInt8]],
        seconds: Double = FuzzDriver.seconds,
        generate: ((inout FuzzRandom, [[UInt8]]) -> [UInt8])? = nil,
        _ body: ([UInt8]) -> FuzzOutcome
    ) -> (report: FuzzReport, failures: [String]) {
        var session = FuzzSession(target, corpus: corpus, seconds: seconds, generate: generate)
        while let input = session.next() { session.record(body(input), for: input) }
        return session.finish()
    }

    public static func hex(_ bytes: some Collection<UInt8>, limit: Int = 4096) -> String {
        let digits = Array("0123456789abcdef")
        var text = ""
        text.reserveCapacity(min(bytes.count, limit) * 2)
        for byte in bytes.prefix(limit) {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xf)])
        }
        return bytes.count > limit ? text + "…" : text
    }

    /// Resident set size of this process, from /proc/self/statm.
    public static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// One fuzz run driven by its caller (for decoders that must be awaited): `next()` until it
/// says the time box is over, `record` each outcome, then `finish`.
public struct FuzzSession {
    public let target: String
    private let corpus: [[UInt8]]
    private let generate: ((inout FuzzRandom, [[UInt8]]) -> [UInt8])?
    private let deadline: ContinuousClock.Instant
    private let start = ContinuousClock.now
    private let residentBefore = FuzzDriver.residentBytes()
    private let slot: Int?
    private var report: FuzzReport
    private var failures: [String] = []
    private var iteration = 0

    public init(_ target: String, corpus: [[UInt8]], seconds: Double = FuzzDriver.seconds, generate: ((inout FuzzRandom, [[UInt8]]) -> [UInt8])? = nil) {
        precondition(!corpus.isEmpty, "a fuzz target needs at least one valid input")
        self.target = target
        self.corpus = corpus
        self.generate = generate
        let seed = FuzzDriver.seed(for: target)
        report = FuzzReport(target: target, seed: seed)
        deadline = start + .milliseconds(Int64(seconds * 1000))
        slot = CrashSlots.claim(target: target, seed: seed)
    }

    /// The next input (the corpus first), or nil once the time box is over.
    public mutating func next() -> [UInt8]? {
        guard iteration < corpus.count || ContinuousClock.now < deadline else { return nil }
        let input: [UInt8]
        if iteration < corpus.count {
            input = corpus[iteration]
        } else {
            var random = FuzzRandom(seed: report.seed &+ UInt64(iteration) &* 0x2545_f491_4f6c_dd1d)
            if let generate, random.chance(2) {
                input = generate(&random, corpus)
            } else {
                input = FuzzMutator.mutate(corpus[Int(random.next() % UInt64(corpus.count))], corpus: corpus, using: &random)
            }
        }
        CrashSlots.hold(slot, input: input, iteration: iteration)
        return input
    }

    public mutating func record(_ outcome: FuzzOutcome, for input: [UInt8]) {
        switch outcome {
        case .accepted: report.accepted += 1
        case .rejected: report.rejected += 1
        case .violation(let why):
            report.violations += 1
            if failures.count < 5 {
                failures.append("fuzz \(target) seed=0x\(String(report.seed, radix: 16)) iteration=\(iteration): \(why); input (\(input.count) bytes) = \(FuzzDriver.hex(input))")
            }
        }
        iteration += 1
    }

    /// Ends the run: prints and returns its numbers and the violations found.
    public func finish() -> (report: FuzzReport, failures: [String]) {
        CrashSlots.release(slot)
        var report = report
        report.iterations = iteration
        let elapsed = (ContinuousClock.now - start).components
        report.seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        report.residentGrowthBytes = FuzzDriver.residentBytes() - residentBefore
        print(report)
        return (report, failures)
    }
}

/// Inputs being decoded right now, printed by a signal handler if a decoder traps.
enum CrashSlots {
    static let count = 32
    static let inputCapacity = 8192

    struct Slot {
        var active: Bool
        var thread: pthread_t
        var seed: UInt64
        var iteration: Int
        var label: (UnsafeMutablePointer<UInt8>, Int)
        var input: UnsafeMutablePointer<UInt8>
        var length: Int
        var truncated: Bool
    }

    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Slot> = {
        let slots = UnsafeMutablePointer<Slot>.allocate(capacity: count)
        for index in 0..<count {
            slots[index] = Slot(
                active: false, thread: pthread_self(), seed: 0, iteration: 0, label: (.allocate(capacity: 256), 0),
                input: .allocate(capacity: inputCapacity), length: 0, truncated: false
            )
        }
        installHandlers()
        return slots
    }()
    nonisolated(unsafe) static let output = UnsafeMutablePointer<UInt8>.allocate(capacity: 2 * inputCapacity + 256)
    /// The handlers found at installation, by signal number (fixed storage: read in the handler).
    nonisolated(unsafe) static var previous: [Glibc.sigaction] = Array(repeating: Glibc.sigaction(), count: 32)
    nonisolated(unsafe) static var previousSet = [Bool](repeating: false, count: 32)
    static let claims = Mutex<[Bool]>(Array(repeating: false, count: count))
    static let signals: [Int32] = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE]

    static func claim(target: String, seed: UInt64) -> Int? {
        _ = slots
        guard let index = claims.withLock({ taken -> Int? in
            guard let free = taken.firstIndex(of: false) else { return nil }
            taken[free] = true
            return free
        }) else { return nil }
        let label = Array("fuzz target '\(target)' crashed: SWITCHBOARD_FUZZ_SEED=0x\(String(FuzzDriver.baseSeed, radix: 16)) target seed=0x\(String(seed, radix: 16)) iteration=".utf8.prefix(256))
        label.withUnsafeBufferPointer { slots[index].label.0.update(from: $0.baseAddress!, count: label.count) }
        slots[index].label.1 = label.count
        slots[index].seed = seed
        slots[index].thread = pthread_self()
        slots[index].active = true
        return index
    }

    static func hold(_ index: Int?, input: [UInt8], iteration: Int) {
        guard let index else { return }
        let length = min(input.count, inputCapacity)
        input.withUnsafeBufferPointer { if length > 0 { slots[index].input.update(from: $0.baseAddress!, count: length) } }
        slots[index].length = length
        slots[index].truncated = input.count > inputCapacity
        slots[index].iteration = iteration
        slots[index].thread = pthread_self()
    }

    static func release(_ index: Int?) {
        guard let index else { return }
        slots[index].active = false
        claims.withLock { $0[index] = false }
    }

    private static func installHandlers() {
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in CrashSlots.report(signal: number) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            var old = sigaction()
            sigaction(signal, &action, &old)
            previous[Int(signal)] = old
            previousSet[Int(signal)] = true
        }
    }

    /// Signal context: no allocation, only write(2) of preformatted bytes.
    static func report(signal number: Int32) {
        let me = pthread_self()
        var mine = false
        for index in 0..<count where slots[index].active && pthread_equal(slots[index].thread, me) != 0 { mine = true }
        for index in 0..<count where slots[index].active && (!mine || pthread_equal(slots[index].thread, me) != 0) {
            let slot = slots[index]
            var length = 0
            func put(_ byte: UInt8) { output[length] = byte; length += 1 }
            for offset in 0..<slot.label.1 { put(slot.label.0[offset]) }
            let value = slot.iteration
            var divisor = 1
            while value / divisor >= 10 { divisor *= 10 }
            repeat { put(UInt8(48 + (value / divisor) % 10)); divisor /= 10 } while divisor > 0
            let separator: StaticString = " input hex="
            for offset in 0..<separator.utf8CodeUnitCount { put(separator.utf8Start[offset]) }
            let hexDigits: StaticString = "0123456789abcdef"
            for offset in 0..<slot.length {
                let byte = slot.input[offset]
                put(hexDigits.utf8Start[Int(byte >> 4)])
                put(hexDigits.utf8Start[Int(byte & 0xf)])
            }
            if slot.truncated { put(UInt8(ascii: "+")) }
            put(UInt8(ascii: "\n"))
            _ = write(2, output, length)
        }
        // Hand the signal back to whoever had it (the runtime's backtracer, or the default).
        if number >= 0, number < 32, previousSet[Int(number)] { sigaction(number, &previous[Int(number)], nil) } else { Glibc.signal(number, SIG_DFL) }
    }
}
