/// Why bytes could not be turned into a Switchboard message. Decoders never trap on input
/// from the network: every malformed payload ends up as one of these.
public enum ProtoError: Error, Equatable, CustomStringConvertible {
    /// protobuf-c rejected the bytes (truncated, wrong wire type, bad varint, bad UTF-8...).
    case malformed(message: String, byteCount: Int)
    /// An enum field carried a number this build does not know.
    case unknownEnumValue(message: String, field: String, value: Int32)
    /// A field that the contract requires was empty.
    case missingField(message: String, field: String)

    public var description: String {
        switch self {
        case .malformed(let message, let count):
            "malformed \(message): \(count) bytes are not a valid protobuf encoding"
        case .unknownEnumValue(let message, let field, let value):
            "\(message).\(field) has unknown enum value \(value)"
        case .missingField(let message, let field):
            "\(message).\(field) is required but empty"
        }
    }
}
