/// Each channel's last delivered event in one partition: what gives every event its `prev`,
/// so that a client holding seq S of a channel and receiving an event whose `prev` is not S
/// knows for certain it missed something.
///
/// `prev` is a function of the stream alone — the previous event stored on the channel's
/// subject that is not poison — so every replica and every restart computes the same value:
/// the pipeline links each event once, when it is first taken (a retry or a redelivery does
/// not link it again), and at start-up relinks what the partition's stream holds up to its
/// ack floor (`EventPipeline.rebuildChain`). Cost: one dictionary entry per channel that has
/// events (the channel name and a `UInt64`, about 80 bytes), per partition.
///
/// Pure state, no I/O; one per partition (`PartitionCursor`), used from its pipeline's thread only.
struct ChannelChain {
    private var last: [String: UInt64] = [:]

    /// Links the event at `seq` of `channel` into the chain and returns its `prev` (0 when it
    /// is the channel's first). An event at or below the channel's last (a redelivery) is
    /// not linked again: its `prev` is returned as it was, when known.
    mutating func link(channel: String, seq: UInt64) -> UInt64 {
        let prev = last[channel] ?? 0
        guard seq > prev else { return 0 }
        last[channel] = seq
        return prev
    }

    /// Undoes `link` of the channel's last event `seq`, whose `prev` it returned (events are
    /// unlinked newest first).
    mutating func unlink(channel: String, seq: UInt64, prev: UInt64) {
        guard last[channel] == seq else { return }
        last[channel] = prev == 0 ? nil : prev
    }

    var channelCount: Int { last.count }
}
