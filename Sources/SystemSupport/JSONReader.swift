/// A small JSON reader, without Foundation: the responses of KMS and the credential endpoints, the
/// STATUS and ADMIN documents. It parses the whole document into a tree of byte ranges over the
/// caller's buffer and decodes a string only when asked, so a secret value (decoded by AWSKMS
/// straight into locked memory) never becomes a Swift `String`.
public struct JSONReader {
    public indirect enum Node {
        /// Byte range of the string's contents, between the quotes, still escaped.
        case string(Range<Int>)
        case number(Range<Int>)
        case bool(Bool)
        case null
        case object([(String, Node)])
        case array([Node])
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let bytes: UnsafeRawBufferPointer
    public let root: Node

    /// Parses `bytes`, which must outlive the reader.
    public init(bytes: UnsafeRawBufferPointer) throws(Failure) {
        self.bytes = bytes
        var parser = Parser(bytes: bytes)
        parser.skipSpace()
        let root = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.offset == bytes.count else { throw Failure(description: "extra bytes after the JSON document") }
        self.root = root
    }

    public func member(_ name: String, of node: Node? = nil) -> Node? {
        guard case let .object(members) = node ?? root else { return nil }
        return members.first { $0.0 == name }?.1
    }

    public func string(_ node: Node?) -> String? {
        guard case let .string(range)? = node else { return nil }
        let length = Self.decodedLength(bytes, range)
        guard let length else { return nil }
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBytes { Self.decode(bytes, range, into: $0) }
        return String(decoding: out, as: UTF8.self)
    }

    public func number(_ node: Node?) -> Double? {
        guard case let .number(range)? = node else { return nil }
        return Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self))
    }

    /// A number that is a whole Int (no fraction or exponent).
    public func int(_ node: Node?) -> Int? {
        guard case let .number(range)? = node else { return nil }
        return Int(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self))
    }

    public func array(_ node: Node?) -> [Node]? {
        guard case let .array(items)? = node else { return nil }
        return items
    }

    /// An object's members in document order.
    public func members(_ node: Node?) -> [(String, Node)]? {
        guard case let .object(members)? = node else { return nil }
        return members
    }

    public func isNull(_ node: Node?) -> Bool {
        guard case .null? = node else { return false }
        return true
    }

    public func bool(_ node: Node?) -> Bool? {
        guard case let .bool(value)? = node else { return nil }
        return value
    }

    // MARK: String escapes

    /// The length of the unescaped UTF-8, or nil for a malformed escape.
    public static func decodedLength(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        var length = 0
        var index = range.lowerBound
        while index < range.upperBound {
            if bytes[index] != UInt8(ascii: "\\") {
                length += 1
                index += 1
                continue
            }
            guard index + 1 < range.upperBound else { return nil }
            if bytes[index + 1] == UInt8(ascii: "u") {
                guard let (scalar, used) = unicodeEscape(bytes, at: index, end: range.upperBound) else { return nil }
                length += UTF8.width(scalar)
                index += used
            } else {
                length += 1
                index += 2
            }
        }
        return length
    }

    /// Writes the unescaped string; `out` has `decodedLength` bytes.
    public static func decode(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, into out: UnsafeMutableRawBufferPointer) {
        var index = range.lowerBound
        var position = 0
        while index < range.upperBound, position < out.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\"), index + 1 < range.upperBound else {
                out[position] = byte
                position += 1
                index += 1
                continue
            }
            let escaped = bytes[index + 1]
            if escaped == UInt8(ascii: "u"), let (scalar, used) = unicodeEscape(bytes, at: index, end: range.upperBound) {
                if let encoded = UTF8.encode(scalar) {
                    for unit in encoded where position < out.count {
                        out[position] = unit
                        position += 1
                    }
                }
                index += used
                continue
            }
            let value: UInt8 = switch escaped {
            case UInt8(ascii: "n"): 0x0A
            case UInt8(ascii: "t"): 0x09
            case UInt8(ascii: "r"): 0x0D
            case UInt8(ascii: "b"): 0x08
            case UInt8(ascii: "f"): 0x0C
            default: escaped
            }
            out[position] = value
            position += 1
            index += 2
        }
    }

    /// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`; returns the scalar and the bytes used.
    private static func unicodeEscape(_ bytes: UnsafeRawBufferPointer, at index: Int, end: Int) -> (Unicode.Scalar, Int)? {
        func hex4(_ start: Int) -> UInt32? {
            guard start + 4 <= end else { return nil }
            var value: UInt32 = 0
            for offset in 0..<4 {
                guard let digit = Hex.value(of: bytes[start + offset]) else { return nil }
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        guard let high = hex4(index + 2) else { return nil }
        if (0xD800..<0xDC00).contains(high) {
            guard index + 12 <= end, bytes[index + 6] == UInt8(ascii: "\\"), bytes[index + 7] == UInt8(ascii: "u"),
                  let low = hex4(index + 8), (0xDC00..<0xE000).contains(low),
                  let scalar = Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
            else { return nil }
            return (scalar, 12)
        }
        guard let scalar = Unicode.Scalar(high) else { return nil }
        return (scalar, 6)
    }

    // MARK: Parser

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var offset = 0
        static let maximumDepth = 64

        public init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        mutating func skipSpace() {
            while offset < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
        }

        func fail(_ what: String) -> Failure {
            Failure(description: "\(what) at byte \(offset)")
        }

        mutating func value(depth: Int) throws(Failure) -> Node {
            guard depth < Self.maximumDepth else { throw fail("JSON nested too deeply") }
            guard offset < bytes.count else { throw fail("unexpected end of JSON") }
            switch bytes[offset] {
            case UInt8(ascii: "{"):
                offset += 1
                var members: [(String, Node)] = []
                skipSpace()
                if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
                    offset += 1
                    return .object(members)
                }
                while true {
                    skipSpace()
                    guard case let .string(range) = try string() else { throw fail("expected a member name") }
                    guard let length = JSONReader.decodedLength(bytes, range) else { throw fail("bad escape") }
                    var name = [UInt8](repeating: 0, count: length)
                    name.withUnsafeMutableBytes { JSONReader.decode(bytes, range, into: $0) }
                    skipSpace()
                    guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw fail("expected \":\"") }
                    offset += 1
                    skipSpace()
                    members.append((String(decoding: name, as: UTF8.self), try value(depth: depth + 1)))
                    skipSpace()
                    guard offset < bytes.count else { throw fail("unexpected end of JSON") }
                    if bytes[offset] == UInt8(ascii: ",") { offset += 1; continue }
                    if bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(members) }
                    throw fail("expected \",\" or \"}\"")
                }
            case UInt8(ascii: "["):
                offset += 1
                var items: [Node] = []
                skipSpace()
                if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
                    offset += 1
                    return .array(items)
                }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard offset < bytes.count else { throw fail("unexpected end of JSON") }
                    if bytes[offset] == UInt8(ascii: ",") { offset += 1; continue }
                    if bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(items) }
                    throw fail("expected \",\" or \"]\"")
                }
            case UInt8(ascii: "\""):
                return try string()
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            default:
                let start = offset
                while offset < bytes.count, Self.isNumberByte(bytes[offset]) { offset += 1 }
                guard offset > start else { throw fail("unexpected character") }
                return .number(start..<offset)
            }
        }

        static func isNumberByte(_ c: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
        }

        mutating func literal(_ text: String) throws(Failure) {
            let utf8 = Array(text.utf8)
            guard offset + utf8.count <= bytes.count, Array(bytes[offset..<(offset + utf8.count)]) == utf8 else {
                throw fail("unexpected character")
            }
            offset += utf8.count
        }

        mutating func string() throws(Failure) -> Node {
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw fail("expected a string") }
            offset += 1
            let start = offset
            while offset < bytes.count {
                let c = bytes[offset]
                if c == UInt8(ascii: "\\") {
                    offset += 2
                    continue
                }
                if c == UInt8(ascii: "\"") {
                    let range = start..<offset
                    offset += 1
                    return .string(range)
                }
                guard c >= 0x20 else { throw fail("control character in a string") }
                offset += 1
            }
            throw fail("unterminated string")
        }
    }
}

