/// Headers Switchboard sets on NATS messages.
public enum HeaderNames {
    /// On `notify.inbox.<instance>`: which message the payload is (see `InboxKind`).
    public static let kind = "Switchboard-Kind"
    /// On a dead letter: why the event could not be routed.
    public static let reason = "Switchboard-Reason"
    /// On a dead letter: the subject the event was published on.
    public static let subject = "Switchboard-Subject"
    /// On a dead letter: the event's `CHAT_EVENTS` stream sequence.
    public static let streamSequence = "Switchboard-Stream-Seq"
}

/// Values of the `Switchboard-Kind` header on inbox messages: a `Typing` or a `Delivery`
/// (an absent header means a delivery).
public enum InboxKind {
    public static let header = HeaderNames.kind
    public static let delivery = "delivery"
    public static let typing = "typing"
}
