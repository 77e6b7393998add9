/// Turns bytes from a KMIP server into TTLV items, checking every length against the bytes that
/// are there: a server's answer is outside input.
///
///     bytes in:  42 00 7B | 01 | 00 00 00 20 | 42 00 7A | 01 | 00 00 00 18 | …
///     items out: ResponseMessage { ResponseHeader { … } … }
///
/// Refused: a length running past its parent, a fixed-size type with another length, a boolean
/// other than 0 or 1, text that is not UTF-8, an unknown type byte, nesting deeper than
/// `maximumDepth`, and bytes left over after the item.
public struct TTLVDecoder {
    public static let maximumDepth = 16

    public static func decode(_ bytes: [UInt8]) throws(TTLVError) -> TTLV {
        var offset = 0
        let item = try decodeItem(bytes, &offset, end: bytes.count, depth: 0)
        guard offset == bytes.count else {
            throw TTLVError(.trailingBytes, at: offset, "\(bytes.count - offset) bytes after the message")
        }
        return item
    }

    /// The length of the message that starts with `header` (its first 8 bytes), header included.
    public static func messageLength(header: some Collection<UInt8>) throws(TTLVError) -> Int {
        let bytes = Array(header.prefix(8))
        guard bytes.count == 8 else { throw TTLVError(.truncated, at: bytes.count, "a message header is 8 bytes") }
        guard bytes[0] == 0x42, bytes[3] == 0x01 else {
            throw TTLVError(.notAMessage, at: 0, "the answer does not start with a KMIP structure (is the port a KMIP server?)")
        }
        return 8 + Int(readBE(bytes, 4, 4))
    }

    private static func readBE(_ buffer: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<count { value = value << 8 | UInt64(buffer[offset + index]) }
        return value
    }

    private static func decodeItem(_ buffer: [UInt8], _ offset: inout Int, end: Int, depth: Int) throws(TTLVError) -> TTLV {
        let start = offset
        guard end - offset >= 8 else { throw TTLVError(.truncated, at: offset, "an item header needs 8 bytes, \(end - offset) remain") }
        let tag = Tag(UInt32(readBE(buffer, offset, 3)))
        let type = buffer[offset + 3]
        let length = Int(readBE(buffer, offset + 4, 4))
        offset += 8
        let padded = type == 0x01 ? length : (length + 7) / 8 * 8
        guard padded <= end - offset else {
            throw TTLVError(.truncated, at: start, "item \(tag) claims \(length) bytes, \(end - offset) remain")
        }
        let valueStart = offset
        func fixed(_ expected: Int) throws(TTLVError) {
            guard length == expected else {
                throw TTLVError(.badLength, at: start, "item \(tag) of type \(type) has length \(length), not \(expected)")
            }
        }
        let value: TTLV.Value
        switch type {
        case 0x01:
            guard depth < maximumDepth else { throw TTLVError(.tooDeep, at: start, "structures nested deeper than \(maximumDepth)") }
            var children: [TTLV] = []
            var inner = valueStart
            let innerEnd = valueStart + length
            while inner < innerEnd {
                children.append(try decodeItem(buffer, &inner, end: innerEnd, depth: depth + 1))
            }
            value = .structure(children)
        case 0x02:
            try fixed(4)
            value = .integer(Int32(bitPattern: UInt32(readBE(buffer, valueStart, 4))))
        case 0x03:
            try fixed(8)
            value = .longInteger(Int64(bitPattern: readBE(buffer, valueStart, 8)))
        case 0x04:
            guard length % 8 == 0 else { throw TTLVError(.badLength, at: start, "big integer \(tag) has length \(length), not a multiple of 8") }
            value = .bigInteger(Array(buffer[valueStart..<(valueStart + length)]))
        case 0x05:
            try fixed(4)
            value = .enumeration(UInt32(readBE(buffer, valueStart, 4)))
        case 0x06:
            try fixed(8)
            let raw = readBE(buffer, valueStart, 8)
            guard raw <= 1 else { throw TTLVError(.badValue, at: start, "boolean \(tag) is \(raw), not 0 or 1") }
            value = .boolean(raw == 1)
        case 0x07:
            guard let text = String(validating: buffer[valueStart..<(valueStart + length)], as: UTF8.self) else {
                throw TTLVError(.badValue, at: start, "text string \(tag) is not UTF-8")
            }
            value = .textString(text)
        case 0x08:
            value = .byteString(Array(buffer[valueStart..<(valueStart + length)]))
        case 0x09:
            try fixed(8)
            value = .dateTime(Int64(bitPattern: readBE(buffer, valueStart, 8)))
        case 0x0A:
            try fixed(4)
            value = .interval(UInt32(readBE(buffer, valueStart, 4)))
        default:
            throw TTLVError(.unknownType, at: start, "item \(tag) has unknown type 0x\(String(type, radix: 16))")
        }
        offset = valueStart + padded
        return TTLV(tag, value)
    }
}

/// Bytes that are not a well-formed TTLV message.
public struct TTLVError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case truncated, badLength, badValue, unknownType, tooDeep, trailingBytes, notAMessage
    }

    public var code: Code
    public var offset: Int
    public var message: String

    public init(_ code: Code, at offset: Int, _ message: String) {
        self.code = code
        self.offset = offset
        self.message = message
    }

    public var description: String { "malformed KMIP message at byte \(offset): \(message)" }
}
