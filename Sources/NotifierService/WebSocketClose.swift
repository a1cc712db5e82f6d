import NIOCore
import NIOWebSocket

/// The close codes the notifier sends (see ClientFrames.swift for what a client does with each).
public enum CloseCode {
    public static let unsupportedData: UInt16 = 1003
    public static let policyViolation: UInt16 = 1008
    public static let messageTooBig: UInt16 = 1009
    /// The instance is draining: reconnect (the load balancer sends you elsewhere).
    public static let reconnect: UInt16 = 4000
    /// Nothing heard from the client for two heartbeat intervals.
    public static let heartbeatTimeout: UInt16 = 4001
    /// The socket's outbound buffer went over its bound: frames were lost, resync.
    public static let slowConsumer: UInt16 = 4008
}

extension WebSocketFrame {
    /// A close frame with `code` and a UTF-8 `reason` (cut to fit the 125-byte control frame limit).
    static func close(code: UInt16, reason: String, allocator: ByteBufferAllocator) -> WebSocketFrame {
        var data = allocator.buffer(capacity: 2 + reason.utf8.count)
        data.writeInteger(code)
        data.writeBytes(reason.utf8.prefix(123))
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }

    /// A complete text frame carrying `payload` (shared, not copied).
    static func text(_ payload: ByteBuffer) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: payload)
    }
}
