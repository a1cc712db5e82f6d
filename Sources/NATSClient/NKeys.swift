import Crypto

/// The nkeys encoding of ed25519 keys (base32 of a type prefix, the key and a CRC-16), for
/// `--nats-nkey-seed-file`: nats.c signs with the seed but needs the public key named too.
public enum NKeys {
    /// The first byte of an encoded public key (its letter once in base32).
    public enum Kind: UInt8, Sendable {
        case operatorKey = 112  // 'O'
        case account = 0  // 'A'
        case user = 160  // 'U'
    }

    static let seedPrefix: UInt8 = 18 << 3  // 'S'

    /// The public key (`U…`, `A…`, `O…`) of an encoded seed (`SU…`, …).
    public static func publicKey(ofSeed seed: String) throws -> String {
        guard let bytes = base32Decode(seed), bytes.count == 36,
              crc16(Array(bytes[0..<34])) == UInt16(bytes[34]) | UInt16(bytes[35]) << 8,
              bytes[0] & 0xF8 == seedPrefix,
              let kind = Kind(rawValue: (bytes[0] & 7) << 5 | bytes[1] >> 3) else {
            throw NATSError.invalidArgument("not an nkey seed (expected a line like SU…, checksum included)")
        }
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: bytes[2..<34])
        return encode([kind.rawValue] + Array(key.publicKey.rawRepresentation))
    }

    /// The encoded seed of a raw 32-byte ed25519 seed.
    public static func seed(_ raw: [UInt8], kind: Kind) -> String {
        encode([seedPrefix | (kind.rawValue >> 5), (kind.rawValue & 31) << 3] + raw)
    }

    /// The encoded public key of a raw 32-byte ed25519 public key.
    public static func publicKey(_ raw: [UInt8], kind: Kind) -> String { encode([kind.rawValue] + raw) }

    static func encode(_ bytes: [UInt8]) -> String {
        let crc = crc16(bytes)
        return base32Encode(bytes + [UInt8(crc & 0xFF), UInt8(crc >> 8)])
    }

    /// CRC-16/XMODEM, as nkeys checks it.
    static func crc16(_ bytes: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }

    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// RFC 4648 base32 without padding.
    public static func base32Encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = [], buffer = 0, bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | Int(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
            buffer &= (1 << bits) - 1
        }
        if bits > 0 { out.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func base32Decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = [], buffer = 0, bits = 0
        for character in text.utf8 {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = (buffer << 5) | value
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> (bits - 8)) & 0xFF))
                bits -= 8
            }
            buffer &= (1 << bits) - 1
        }
        return out
    }
}
