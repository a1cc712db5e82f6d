import NIOCore

/// A server text frame encoded once, header and payload in one buffer, for writing the same
/// bytes to every recipient socket: a broadcast to thousands of sockets then costs no header
/// encoding, allocation or second buffer per socket (the WebSocket encoder would make each).
///
/// Servers do not mask (RFC 6455 §5.1), so the wire bytes do not depend on the socket.
struct TextFrame: Sendable {
    /// The whole frame as it goes on the wire.
    let wire: ByteBuffer
    let headerBytes: Int

    init(payload: [UInt8], allocator: ByteBufferAllocator) {
        let count = payload.count
        headerBytes = count < 126 ? 2 : count <= 0xFFFF ? 4 : 10
        var buffer = allocator.buffer(capacity: headerBytes + count)
        buffer.writeInteger(UInt8(0x81))  // FIN, text
        if count < 126 {
            buffer.writeInteger(UInt8(count))
        } else if count <= 0xFFFF {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(count))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(count))
        }
        buffer.writeBytes(payload)
        wire = buffer
    }

    var payloadBytes: Int { wire.readableBytes - headerBytes }

    /// The payload alone (sharing the storage), for a pipeline without the raw path.
    var payload: ByteBuffer { wire.getSlice(at: wire.readerIndex + headerBytes, length: payloadBytes)! }
}
