import ArgumentParser

/// The synthetic chat workload's options shared by `fanout` and `pipeline`: how many users and
/// channels, how large the channels are, and the seed that makes a run repeatable.
struct WorkloadOptions: ParsableArguments {
    @Option(help: "Users in the workload.") var users = 20_000
    @Option(help: "Channels in the workload.") var channels = 1000
    @Option(help: "Median members per ordinary channel (log-normal, sigma 0.6).") var medianMembers = 50
    @Option(help: "Every n-th channel is large (0: none).") var largeEvery = 50
    @Option(help: "Members of a large channel.") var largeMembers = 2000
    @Option(help: "Workload seed.") var seed: UInt64 = 7

    func validate() throws {
        guard users > 1, channels > 0, medianMembers > 0 else {
            throw ValidationError("users (more than one), channels and members must be positive")
        }
    }

    /// The workload of these options with `onlineFraction` of the users online, spread over
    /// `instances` notifiers, on a stream of `partitionCount` partitions.
    func workload(onlineFraction: Double, instances: Int, partitionCount: Int) -> PipelineWorkload {
        PipelineWorkload(.init(
            channels: channels, users: users, medianMembers: medianMembers, largeEvery: largeEvery, largeMembers: largeMembers,
            onlineFraction: onlineFraction, instances: instances, partitionCount: partitionCount, seed: seed
        ))
    }
}
