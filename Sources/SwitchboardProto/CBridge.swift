import CSwitchboardProto

// The only file that knows protobuf-c's memory rules: unpacked messages are copied into
// Swift values and freed at once; messages to pack point at Swift-owned memory that lives
// for the duration of the pack call.

/// Copies a NUL-terminated C string owned by an unpacked message; NULL reads as "".
@inline(__always)
func swiftString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    return String(cString: pointer)
}

/// Runs `body` with the bytes of `input` as protobuf-c expects them (a NULL pointer is fine
/// for zero bytes: protobuf-c reads `len` bytes only). Contiguous input is not copied.
@inline(__always)
func withInput<R>(_ input: some Collection<UInt8>, _ body: (Int, UnsafePointer<UInt8>?) -> R) -> R {
    if let result = input.withContiguousStorageIfAvailable({ body($0.count, $0.baseAddress) }) {
        return result
    }
    return Array(input).withUnsafeBufferPointer { body($0.count, $0.baseAddress) }
}

/// Unpacks `bytes` with `unpack` (protobuf-c's `…__unpack(nil, len, data)`); the caller frees
/// the message. Bytes protobuf-c rejects throw `malformed` naming `message`.
@inline(__always)
func unpacked<Message>(_ message: String, _ bytes: some Collection<UInt8>,
                       _ unpack: (Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?) throws(ProtoError) -> UnsafeMutablePointer<Message> {
    let count = bytes.count
    guard let unpackedMessage = withInput(bytes, unpack) else { throw .malformed(message: message, byteCount: count) }
    return unpackedMessage
}

/// Copies a repeated field (`n_<field>` elements at `pointer`) out of an unpacked message.
@inline(__always)
func swiftArray<Element>(_ pointer: UnsafeMutablePointer<Element>?, count: Int) -> [Element] {
    count == 0 ? [] : Array(UnsafeBufferPointer(start: pointer, count: count))
}

/// The Swift enum case of a C enum field; a number this build does not know throws
/// `unknownEnumValue`.
@inline(__always)
func swiftEnum<Value: RawRepresentable>(_ cValue: UInt32, _ message: String, field: String) throws(ProtoError) -> Value where Value.RawValue == Int32 {
    let raw = Int32(bitPattern: cValue)
    guard let value = Value(rawValue: raw) else { throw .unknownEnumValue(message: message, field: field, value: raw) }
    return value
}

/// Packs a message of `size` bytes with `pack` into a new array of exactly that size.
@inline(__always)
func packed(size: Int, _ pack: (UnsafeMutablePointer<UInt8>) -> Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = size == 0 ? 0 : pack(buffer.baseAddress!)
    }
}

/// Owns the C memory a message to be packed points at (string copies, sub-messages) and
/// frees it when the encoder returns. Used on the cold paths (events, membership,
/// presence); the hot `Delivery` encoder borrows Swift storage instead.
final class CArena {
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var messages: [UnsafeMutableRawPointer] = []

    func string(_ string: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = string.utf8CString
        let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
        utf8.withUnsafeBufferPointer { pointer.initialize(from: $0.baseAddress!, count: utf8.count) }
        strings.append(pointer)
        return pointer
    }

    /// A zeroed sub-message initialised by its protobuf-c `__init` function.
    func message<T>(_ type: T.Type, _ initialise: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        initialise(pointer)
        messages.append(UnsafeMutableRawPointer(pointer))
        return pointer
    }

    deinit {
        strings.forEach { $0.deallocate() }
        messages.forEach { $0.deallocate() }
    }
}
