import Foundation

extension JetStream {
    /// Whether the server stores a stream's `subject_transform` (nats-server 2.10 and later).
    /// nats-server 2.9 accepts the field and ignores it silently, so the answer comes from the
    /// JetStream account info: 2.10 added `reserved_memory` to it and 2.11 the API `level`,
    /// neither of which 2.9 sends (nats.c does not expose the server version of its INFO).
    public func serverSupportsStreamSubjectTransforms() throws -> Bool {
        let info = try apiRequest("INFO", payload: [], operation: "JetStream account info")
        if info["reserved_memory"] != nil { return true }
        if case .object(let api)? = info["api"], api["level"] != nil { return true }
        return false
    }
}
