/// Names of the notifier's client protocol (JSON text frames over `/ws`): frame types, error
/// codes, close codes and the HTTP header of a refused upgrade. Clients in any language match
/// on these strings and numbers, so they change only with the protocol.
public enum ClientProtocol {
    /// The HTTP header carrying the stable reason a `/ws` upgrade was refused (401).
    public static let authErrorHeader = "X-Switchboard-Auth-Error"
}

/// The `"type"` of a client frame.
public enum FrameType {
    // server → client
    public static let hello = "hello"
    public static let event = "event"
    /// An event's position without its content (its sender, whose echo is skipped).
    public static let position = "position"
    public static let typing = "typing"
    public static let pong = "pong"
    public static let resumed = "resumed"
    public static let error = "error"
    // client → server (`typing` too)
    public static let ping = "ping"
    public static let resume = "resume"
}

/// The `"reason"` of a `resumed` frame with `complete:false` when the client must do more
/// than fetch older history.
public enum ResumeReason {
    /// The resume named another epoch than `CHAT_EVENTS`' current one: its sequences mean
    /// nothing in the new numbering, so nothing was replayed.
    public static let epochChanged = "epoch_changed"
    /// The resume asked for events from before the user's current join: those are not
    /// replayed (the user's view of a channel starts at its first event after the join).
    public static let membership = "membership"
}

/// The `"code"` of an `error` frame (and of a refused `?resume=`).
public enum FrameErrorCode {
    /// Not a JSON object with a string `type`, or a field missing or of the wrong kind.
    public static let badFrame = "bad_frame"
    /// A `type` the protocol does not have.
    public static let unknownType = "unknown_type"
    /// A `channel` that is not a valid identifier.
    public static let invalidChannel = "invalid_channel"
    /// A malformed `resume` query parameter.
    public static let badResume = "bad_resume"
    /// Resume is not offered by this instance, or failed.
    public static let unavailable = "unavailable"
    /// Too many resumes in progress on the instance; retry shortly.
    public static let busy = "busy"
    /// The channel is already being resumed on this socket.
    public static let alreadyResuming = "already_resuming"
    /// A resume for a channel the user is not a member of.
    public static let notMember = "not_member"
    /// More channels resuming at once on this socket than allowed.
    public static let tooManyResumes = "too_many_resumes"
}

/// The WebSocket close codes the notifier sends, and what a client does on each.
public enum CloseCode {
    /// 1003: binary frames are not part of the protocol.
    public static let unsupportedData: UInt16 = 1003
    /// 1008: the inbound message rate went over the per-socket limit.
    public static let policyViolation: UInt16 = 1008
    /// 1009: a frame or message over the size limit.
    public static let messageTooBig: UInt16 = 1009
    /// 4000: the instance is draining: reconnect (the load balancer sends you elsewhere).
    public static let reconnect: UInt16 = 4000
    /// 4001: nothing heard from the client for two heartbeat intervals.
    public static let heartbeatTimeout: UInt16 = 4001
    /// 4008: the socket's outbound buffer went over its bound: frames were lost, resync.
    public static let slowConsumer: UInt16 = 4008
}
