/// What a NATS server sends a client, read in place from the bytes received: `MSG`, `HMSG`,
/// `PING`, `PONG`, `+OK`, `-ERR`, `INFO` (the client protocol's server operations). Pure: no
/// I/O and nothing copied; every field is a range of the buffer given to `next`.
public enum ServerFrame: Equatable, Sendable {
    case message(ServerMessage)
    case ping
    case pong
    case ok
    /// The JSON after `INFO `.
    case info(Range<Int>)
    /// The text after `-ERR ` (quoted by the server).
    case error(Range<Int>)

    /// Longest control line accepted (an `INFO` with many cluster URLs is a few KB).
    public static let maxControlLine = 64 << 10

    public enum ParseError: Error, Equatable, Sendable {
        case malformed(String)
        case lineTooLong
    }

    /// The frame that starts at `start` and the index just past it, or nil when the bytes end
    /// before it does (read more and call again from the same `start`).
    public static func next(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) throws(ParseError) -> (frame: ServerFrame, end: Int)? {
        guard let base = bytes.baseAddress, start < bytes.count else { return nil }
        let count = bytes.count
        // The control line ends at the first "\r\n".
        var lineEnd = start
        let limit = min(count, start + maxControlLine)
        while lineEnd < limit && base[lineEnd] != carriageReturn { lineEnd += 1 }
        guard lineEnd < limit else {
            if limit - start >= maxControlLine { throw .lineTooLong }
            return nil
        }
        guard lineEnd + 1 < count else { return nil }
        guard base[lineEnd + 1] == lineFeed else { throw .malformed("a control line ends in \\r without \\n") }
        let afterLine = lineEnd + 2
        let first = base[start] | 0x20  // ASCII lower case
        switch first {
        case UInt8(ascii: "m"), UInt8(ascii: "h"):
            return try message(base, lineStart: start, lineEnd: lineEnd, afterLine: afterLine, count: count, headers: first == UInt8(ascii: "h"))
        case UInt8(ascii: "p"):
            if matches(base, start, lineEnd, "ping") { return (.ping, afterLine) }
            if matches(base, start, lineEnd, "pong") { return (.pong, afterLine) }
        case UInt8(ascii: "+"):
            if matches(base, start, lineEnd, "+ok") { return (.ok, afterLine) }
        case UInt8(ascii: "-"):
            if lineEnd - start >= 4, matches(base, start, start + 4, "-err") { return (.error(skipSpaces(base, start + 4, lineEnd)..<lineEnd), afterLine) }
        case UInt8(ascii: "i"):
            if lineEnd - start >= 5, matches(base, start, start + 4, "info"), base[start + 4] == space || base[start + 4] == tab {
                return (.info(skipSpaces(base, start + 4, lineEnd)..<lineEnd), afterLine)
            }
        default:
            break
        }
        throw .malformed("unknown operation \"\(String(decoding: UnsafeBufferPointer(start: base + start, count: min(lineEnd - start, 16)), as: UTF8.self))\"")
    }

    /// `MSG <subject> <sid> [reply] <size>` or `HMSG <subject> <sid> [reply] <header size> <total size>`.
    private static func message(_ base: UnsafePointer<UInt8>, lineStart: Int, lineEnd: Int, afterLine: Int, count: Int, headers: Bool) throws(ParseError) -> (frame: ServerFrame, end: Int)? {
        let operation = headers ? "hmsg" : "msg"
        let opEnd = lineStart + operation.utf8.count
        guard opEnd < lineEnd, matches(base, lineStart, opEnd, operation), base[opEnd] == space || base[opEnd] == tab else {
            throw .malformed("not a message line")
        }
        // At most five arguments: subject, sid, reply, and one or two sizes.
        var arguments: (Range<Int>, Range<Int>, Range<Int>, Range<Int>, Range<Int>) = (0..<0, 0..<0, 0..<0, 0..<0, 0..<0)
        var argumentCount = 0
        var index = opEnd
        while true {
            index = skipSpaces(base, index, lineEnd)
            guard index < lineEnd else { break }
            let tokenStart = index
            while index < lineEnd && base[index] != space && base[index] != tab { index += 1 }
            switch argumentCount {
            case 0: arguments.0 = tokenStart..<index
            case 1: arguments.1 = tokenStart..<index
            case 2: arguments.2 = tokenStart..<index
            case 3: arguments.3 = tokenStart..<index
            case 4: arguments.4 = tokenStart..<index
            default: throw .malformed("\(operation) line with more than five arguments")
            }
            argumentCount += 1
        }
        let sizes = headers ? 2 : 1
        guard argumentCount == 2 + sizes || argumentCount == 3 + sizes else { throw .malformed("\(operation) line with \(argumentCount) arguments") }
        // A switch, not an array of the five: no allocation per message.
        func argument(_ index: Int) -> Range<Int> {
            switch index {
            case 0: arguments.0
            case 1: arguments.1
            case 2: arguments.2
            case 3: arguments.3
            default: arguments.4
            }
        }
        let hasReply = argumentCount == 3 + sizes
        guard let sid = number(base, argument(1)) else { throw .malformed("\(operation) sid is not a number") }
        let sizeIndex = hasReply ? 3 : 2
        guard let first = number(base, argument(sizeIndex)) else { throw .malformed("\(operation) size is not a number") }
        var headerSize = 0
        var total = first
        if headers {
            guard let second = number(base, argument(sizeIndex + 1)) else { throw .malformed("hmsg total size is not a number") }
            guard first <= second else { throw .malformed("hmsg header size \(first) exceeds its total \(second)") }
            headerSize = first
            total = second
        }
        let (end, overflow) = afterLine.addingReportingOverflow(total)
        guard !overflow, end <= Int.max - 2 else { throw .malformed("\(operation) size \(total) too large") }
        guard end + 2 <= count else { return nil }
        guard base[end] == carriageReturn, base[end + 1] == lineFeed else { throw .malformed("\(operation) payload is not followed by \\r\\n") }
        let message = ServerMessage(subject: argument(0), sid: UInt64(sid), reply: hasReply ? argument(2) : nil,
                                    headers: headers ? afterLine..<(afterLine + headerSize) : nil,
                                    payload: (afterLine + headerSize)..<end)
        return (.message(message), end + 2)
    }

    private static let carriageReturn = UInt8(ascii: "\r")
    private static let lineFeed = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")

    /// True when `base[from..<to]` is `lowercase` in any letter case.
    private static func matches(_ base: UnsafePointer<UInt8>, _ from: Int, _ to: Int, _ lowercase: String) -> Bool {
        var utf8 = lowercase.utf8.makeIterator()
        for index in from..<to {
            let byte = base[index]
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            guard utf8.next() == folded else { return false }
        }
        return utf8.next() == nil
    }

    private static func skipSpaces(_ base: UnsafePointer<UInt8>, _ from: Int, _ to: Int) -> Int {
        var index = from
        while index < to && (base[index] == space || base[index] == tab) { index += 1 }
        return index
    }

    /// A decimal of at most 18 digits (no sign), or nil.
    private static func number(_ base: UnsafePointer<UInt8>, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value = 0
        for index in range {
            let digit = base[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}

/// A `MSG` or `HMSG`: ranges of the buffer the frame was read from.
public struct ServerMessage: Equatable, Sendable {
    public var subject: Range<Int>
    public var sid: UInt64
    public var reply: Range<Int>?
    /// The header block (`NATS/1.0…\r\n\r\n`) of an `HMSG`.
    public var headers: Range<Int>?
    public var payload: Range<Int>

    public init(subject: Range<Int>, sid: UInt64, reply: Range<Int>?, headers: Range<Int>?, payload: Range<Int>) {
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.headers = headers
        self.payload = payload
    }
}

/// Reading a header block (`NATS/1.0[ <status>[ <description>]]\r\n<name>: <value>\r\n…\r\n`).
public enum HeaderBlock {
    /// The status code of the first line (100 for JetStream's flow control and heartbeats), or
    /// nil when it has none (an ordinary message's headers).
    public static func status(_ block: UnsafeBufferPointer<UInt8>) -> Int? {
        let prefix = "NATS/1.0".utf8
        guard block.count > prefix.count + 1, block.prefix(prefix.count).elementsEqual(prefix), block[prefix.count] == UInt8(ascii: " ") else { return nil }
        var value = 0
        var digits = 0
        var index = prefix.count + 1
        while index < block.count, case let digit = block[index] &- UInt8(ascii: "0"), digit < 10, digits < 4 {
            value = value * 10 + Int(digit)
            digits += 1
            index += 1
        }
        return digits == 3 ? value : nil
    }

    /// The words after the status code on the first line (`NATS/1.0 408 Request Timeout`),
    /// trimmed; "" when there are none.
    public static func statusDescription(_ block: UnsafeBufferPointer<UInt8>) -> String {
        let prefix = "NATS/1.0 ".utf8.count + 3
        guard status(block) != nil, block.count > prefix else { return "" }
        var end = prefix
        while end < block.count, block[end] != UInt8(ascii: "\r") { end += 1 }
        var start = prefix
        while start < end, block[start] == UInt8(ascii: " ") { start += 1 }
        while end > start, block[end - 1] == UInt8(ascii: " ") { end -= 1 }
        return String(decoding: block[start..<end], as: UTF8.self)
    }

    /// The value of the first header named `name` (names compare without letter case), trimmed.
    public static func value(_ name: String, in block: UnsafeBufferPointer<UInt8>) -> String? {
        let text = String(decoding: block, as: UTF8.self)
        for line in text.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].lowercased() == name.lowercased() {
                let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
                return String(value.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
            }
        }
        return nil
    }
}
