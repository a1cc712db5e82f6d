import Logging
import NIOCore

/// What every session of one server shares.
struct SessionEnvironment: Sendable {
    let instanceID: String
    let registry: SessionRegistry
    let metrics: NotifierMetrics
    let heartbeatInterval: TimeAmount
    let closeHandshakeTimeout: TimeAmount
    let typingPerSecond: Double
    /// Publishes a client's typing indicator to the fan-out (core NATS).
    let publishTyping: @Sendable (_ channel: String, _ user: String) -> Void
    /// Replays events for `resume`; nil when JetStream is unavailable.
    let replayer: (any EventReplaying)?
    let logger: Logger
    /// The socket's outbound budget (the channel's high watermark): only a frame larger than
    /// this can be over it alone, and such a frame is sent rather than counted as slow.
    var outboundBufferBytes = 262_144
    /// `CHAT_EVENTS`' epoch, for `hello`, `resumed` and resumes that name one.
    var epoch = CurrentEpoch()

    /// Channels one socket may be resuming at once.
    static let maxConcurrentResumes = 16
    /// Live frames held back per socket while its resumes run; past it the socket is a slow
    /// consumer (the replay is taking far longer than the channel's traffic allows).
    static let maxHeldFrames = 4096
    /// How long a resume waits for its channel's first live frame before the catch-up pass.
    static let resumeSettle = TimeAmount.seconds(2)
    static let resumeSettlePoll = TimeAmount.milliseconds(50)
}
