import NIOCore
import NIOWebSocket

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
