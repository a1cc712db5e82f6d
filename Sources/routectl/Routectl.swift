import ArgumentParser
import Foundation
import NATSClient
import ServiceSupport
import SwitchboardContracts
import SwitchboardProto

/// routectl: the operator's view of the routing table, and a developer's publish helper.
@main
struct Routectl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routectl",
        abstract: "Inspect Switchboard's routing table and publish test traffic.",
        discussion: "Exit codes: 0 ok, 1 unknown id or bad input, 2 no fan-out replica answered in time, 3 NATS unreachable.",
        subcommands: [Stats.self, User.self, Channel.self, Instances.self, Streams.self, Publish.self]
    )

    static func main() {
        let arguments = EnvironmentFallback.apply(
            to: Array(CommandLine.arguments.dropFirst()),
            options: ["nats-url", "timeout", "partition-count"] + NATSAccessOptions.environmentNames,
            environment: ProcessInfo.processInfo.environment
        )
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let failure as RoutectlFailure {
            fail(failure.message, code: failure.code)
        } catch {
            // --help prints the help and exits 0; a bad flag or value is bad input: one line, exit 1.
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error), code: 1)
        }
    }
}

extension Routectl {
    /// The first line of `message` on stderr, then `code`.
    static func fail(_ message: String, code: Int32) -> Never {
        var line = message.split(separator: "\n").first.map(String.init) ?? message
        if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
        FileHandle.standardError.write(Data("routectl: \(line)\n".utf8))
        Foundation.exit(code)
    }
}

/// Options every subcommand takes.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "NATS server URL (env SWITCHBOARD_NATS_URL); user:password@ (or a token@) in it authenticates.")
    var natsURL = "nats://127.0.0.1:4222"

    @OptionGroup var access: NATSAccessOptions

    @Option(help: "Seconds to wait for the fan-out replicas to answer (env SWITCHBOARD_TIMEOUT).")
    var timeout: Double = 2

    @Flag(help: "Print the merged answers as JSON.")
    var json = false

    func connect() throws -> NATSConnection {
        do {
            return try NATSConnection(options: .init(url: natsURL, name: "routectl", connectTimeout: .seconds(2), maxReconnects: 0,
                                                     tls: access.tls, authentication: access.authentication))
        } catch {
            throw RoutectlFailure(code: 3, message: "cannot reach NATS at \(NATSConnection.redacted(natsURL)): \(error)")
        }
    }
}

/// A failure with the exit code DESIGN gives it and one line for the operator.
struct RoutectlFailure: Error {
    var code: Int32
    var message: String
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Table size, memory and lag per replica and in total.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let answers: Gathered<Inspection.Stats> = try gather(Inspection.statsSubject, payload: "", connection, waitForStandbys: true)
        if connection.json { return try printJSON(answers.json) }
        // Standbys hold the same tables as the active replicas: totals count every replica's memory.
        var rows = [["replica", "partitions", "active", "ready", "users", "online", "channels", "memberships", "table bytes", "B/membership", "event lag"]]
        for s in answers.replies {
            rows.append([
                s.replica.id, PartitionRanges.describe(s.replica.partitions),
                s.replica.activePartitions.map { $0.isEmpty ? "standby" : PartitionRanges.describe($0) } ?? "?", s.replica.ready ? "yes" : "no",
                "\(s.users)", "\(s.onlineUsers)", "\(s.channels)", "\(s.memberships)", "\(s.tableBytes)",
                String(format: "%.2f", s.bytesPerMembership), "\(s.eventLag.values.reduce(0, +))",
            ])
        }
        let memberships = answers.replies.map(\.memberships).reduce(0, +)
        let bytes = answers.replies.map(\.tableBytes).reduce(0, +)
        rows.append([
            "total", "", "", "", "", "", "\(answers.replies.map(\.channels).reduce(0, +))", "\(memberships)", "\(bytes)",
            memberships == 0 ? "-" : String(format: "%.2f", Double(bytes) / Double(memberships)),
            "\(answers.replies.flatMap(\.eventLag.values).reduce(0, +))",
        ])
        printTable(rows)
        answers.printPartialWarning()
    }
}

struct User: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Where a user is online and how many channels list them.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "User id.") var id: String

    func run() throws {
        try requireValid(id, "user")
        let answers: Gathered<Inspection.User> = try gather(Inspection.userSubject, payload: id, connection)
        guard answers.replies.contains(where: \.known) else { throw RoutectlFailure(code: 1, message: "unknown user \(id)") }
        if connection.json { return try printJSON(answers.json) }
        // Presence is the same on every replica; channels are per partition, so they add up.
        let placements = Set(answers.replies.flatMap(\.placements).map { "\($0.instance)#\($0.slot)" }).sorted()
        print("user      \(id)")
        print("online    \(answers.replies.contains(where: \.online) ? "yes" : "no")")
        print("placement \(placements.isEmpty ? "-" : placements.joined(separator: " "))")
        print("channels  \(answers.replies.map(\.channels).reduce(0, +))")
        answers.printPartialWarning()
    }
}

struct Channel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Members, online members and target instances of a channel.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Channel id.") var id: String

    func run() throws {
        try requireValid(id, "channel")
        let answers: Gathered<Inspection.Channel> = try gather(Inspection.channelSubject, payload: id, connection)
        guard let owner = answers.replies.first(where: \.owned) else {
            let partition = answers.replies.first?.partition.description ?? "?"
            throw RoutectlFailure(code: 2, message: "no replica owning partition \(partition) of channel \(id) answered within \(connection.timeout)s")
        }
        guard owner.exists else { throw RoutectlFailure(code: 1, message: "unknown channel \(id)") }
        if connection.json { return try printJSON(answers.json) }
        print("channel   \(id)")
        print("partition \(owner.partition) (replica \(owner.replica.id))")
        print("members   \(owner.members)")
        print("online    \(owner.onlineMembers)")
        printTable([["target instance", "recipients"]] + owner.targets.map { [$0.instance, "\($0.recipients)"] })
    }
}

struct Instances: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Notifier instances the fan-out routes to.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let answers: Gathered<Inspection.Instances> = try gather(Inspection.instancesSubject, payload: "", connection)
        if connection.json { return try printJSON(answers.json) }
        var seen = Set<String>()
        var rows = [["instance", "epoch", "users", "heartbeat age"]]
        for reply in answers.replies {
            for info in reply.instances where seen.insert(info.instance).inserted {
                rows.append([info.instance, "\(info.epoch)", "\(info.users)", String(format: "%.1fs", Double(info.lastHeartbeatAgeMs) / 1000)])
            }
        }
        printTable(rows)
        answers.printPartialWarning()
    }
}

/// The answers of every replica that replied before the timeout.
struct Gathered<Reply: Decodable> {
    var replies: [Reply]
    var raw: [Any]
    var missingPartitions: [Int]
    var partitionCount: Int

    var json: [String: Any] {
        ["replies": raw, "partial": !missingPartitions.isEmpty, "missing_partitions": missingPartitions]
    }

    func printPartialWarning() {
        if !missingPartitions.isEmpty {
            print("PARTIAL: no replica answered for partitions \(PartitionRanges.describe(missingPartitions))")
        }
    }
}

/// Sends one request and collects every replica's reply until all partitions are covered
/// or the timeout passes; with `waitForStandbys`, a little longer once they are covered, for
/// the replies of replicas standing by for the same partitions.
func gather<Reply: Decodable>(_ subject: String, payload: String, _ options: ConnectionOptions, waitForStandbys: Bool = false) throws -> Gathered<Reply> {
    let connection = try options.connect()
    defer { connection.close() }
    let inbox = connection.newInbox()
    let subscription = try connection.subscribeSync(inbox)
    try connection.publish(subject, payload: Array(payload.utf8), reply: inbox)
    try connection.flush(timeout: .seconds(2))

    var deadline = ContinuousClock.now + .milliseconds(Int(options.timeout * 1000))
    var replies: [Reply] = []
    var raw: [Any] = []
    var covered = Set<Int>()
    var partitionCount: Int?
    let decoder = JSONDecoder()
    while ContinuousClock.now < deadline {
        let next: NATSMessage?
        do {
            next = try subscription.nextMessage(timeout: deadline - ContinuousClock.now)
        } catch NATSError.noResponders {
            break  // nobody subscribes to the inspection subject: no replica is running
        }
        guard let message = next else { break }
        let data = Data(message.payload)
        if let failure = try? decoder.decode(Inspection.Failure.self, from: data) {
            FileHandle.standardError.write(Data("routectl: replica \(failure.replica.id): \(failure.error)\n".utf8))
            covered.formUnion(failure.replica.partitions)
            partitionCount = failure.replica.partitionCount
            continue
        }
        let reply = try decoder.decode(Reply.self, from: data)
        let replica = try decoder.decode(ReplicaOnly.self, from: data).replica
        replies.append(reply)
        raw.append(try JSONSerialization.jsonObject(with: data))
        covered.formUnion(replica.partitions)
        partitionCount = replica.partitionCount
        if covered.count == replica.partitionCount {
            guard waitForStandbys else { break }
            deadline = min(deadline, ContinuousClock.now + .milliseconds(250))
        }
    }
    guard let partitionCount else {
        throw RoutectlFailure(code: 2, message: "no fan-out replica answered \(subject) within \(options.timeout)s")
    }
    let missing = (0..<partitionCount).filter { !covered.contains($0) }
    return Gathered(replies: replies, raw: raw, missingPartitions: missing, partitionCount: partitionCount)
}

private struct ReplicaOnly: Decodable { var replica: Inspection.Replica }

func requireValid(_ id: String, _ kind: String) throws {
    guard Identifier.isValid(id) else {
        throw RoutectlFailure(code: 1, message: "invalid \(kind) id '\(id)': use 1-64 characters of A-Z a-z 0-9 _ -")
    }
}

func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    let widths = header.indices.map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    for row in rows {
        print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}
