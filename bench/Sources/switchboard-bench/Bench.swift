import ArgumentParser

/// `switchboard-bench`: the project's benchmarks (bench/README.md). Each prints the machine,
/// the command and the numbers; none is a pass/fail test.
@main
struct SwitchboardBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Switchboard benchmarks on generated data and real servers.",
        subcommands: [CoreBench.self, PipelineBench.self, ColdStartBench.self, NotifierBench.self, EndToEndBench.self, PeerBench.self, FailoverBench.self]
    )
}
