import NATSClient

/// Where an event pipeline's output goes: deliveries on core NATS (published, then flushed)
/// and dead letters stored in JetStream. A protocol so that fault tests can wrap the real
/// connection and make chosen calls fail.
protocol PipelineOutput: Sendable {
    func publish(_ subject: String, payload: [UInt8]) throws
    func flush(timeout: Duration) throws
    /// Stores a dead letter; returns once the stream has it. `msgID` lets the stream drop a
    /// second copy when a retry dead-letters the same event again.
    func deadLetter(_ subject: String, payload: [UInt8], headers: NATSHeaders, msgID: String) throws
}

/// The production output: the fan-out's NATS connection and its JetStream context.
struct NATSPipelineOutput: PipelineOutput {
    let connection: NATSConnection
    let jetStream: JetStream

    func publish(_ subject: String, payload: [UInt8]) throws {
        try connection.publish(subject, payload: payload)
    }

    func flush(timeout: Duration) throws {
        try connection.flush(timeout: timeout)
    }

    func deadLetter(_ subject: String, payload: [UInt8], headers: NATSHeaders, msgID: String) throws {
        _ = try jetStream.publish(subject, payload: payload, msgID: msgID, headers: headers)
    }
}

/// The production output when the pull feed has a connection of its own: deliveries go out on
/// it, gathered with the feed's requests and acks into one write per pipeline turn, and its
/// flush confirms them; dead letters go through JetStream on the main connection.
struct FeedPipelineOutput: PipelineOutput {
    let feed: PullFeed
    let jetStream: JetStream

    func publish(_ subject: String, payload: [UInt8]) throws {
        feed.publishDelivery(subject, payload: payload)
    }

    func flush(timeout: Duration) throws {
        try feed.flushDeliveries(timeout: timeout)
    }

    func deadLetter(_ subject: String, payload: [UInt8], headers: NATSHeaders, msgID: String) throws {
        _ = try jetStream.publish(subject, payload: payload, msgID: msgID, headers: headers)
    }
}

