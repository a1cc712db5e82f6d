import Foundation
import SwitchboardHarness

/// The first lines of every benchmark run — the machine, the load it starts under and the
/// command that repeats it — printed before anything is measured and kept for the report.
struct RunHeader {
    let command: String
    let loadAtStart: String

    /// Makes Ctrl-C stop the bench's child processes (`program` names the bench in that
    /// message), then prints the header of a `switchboard-bench <subcommand>` run.
    static func begin(_ subcommand: String, program: String = "switchboard-bench") -> RunHeader {
        ChildProcesses.killOnInterrupt(program: program)
        let header = RunHeader(
            command: (["switchboard-bench", subcommand] + CommandLine.arguments.dropFirst(2)).joined(separator: " "),
            loadAtStart: Machine.loadAverage
        )
        print("machine: \(Machine.description)")
        print("load average at start: \(header.loadAtStart)")
        print("command: \(header.command)")
        return header
    }
}
