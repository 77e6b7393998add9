/// Turns TTLV items into bytes. Encoding never fails: lengths that do not fit 32 bits cannot be
/// built from the values keybroker sends (keys, identifiers, names).
public enum TTLVEncoder {
    public static func encode(_ item: TTLV) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        append(item, to: &out)
        return out
    }

    public static func append(_ item: TTLV, to out: inout [UInt8]) {
        appendBE(item.tag.rawValue, bytes: 3, to: &out)
        out.append(item.typeCode)
        switch item.value {
        case let .structure(children):
            let lengthAt = out.count
            appendBE(0, bytes: 4, to: &out)
            for child in children { append(child, to: &out) }
            let length = UInt32(out.count - lengthAt - 4)
            for index in 0..<4 { out[lengthAt + index] = UInt8(truncatingIfNeeded: length >> (24 - 8 * UInt32(index))) }
        case let .integer(value):
            appendBE(4, bytes: 4, to: &out)
            appendBE(UInt64(UInt32(bitPattern: value)), bytes: 4, to: &out)
            pad(4, &out)
        case let .longInteger(value), let .dateTime(value):
            appendBE(8, bytes: 4, to: &out)
            appendBE(UInt64(bitPattern: value), bytes: 8, to: &out)
        case let .bigInteger(bytes):
            appendBE(UInt64(bytes.count), bytes: 4, to: &out)
            out += bytes
            pad(bytes.count, &out)
        case let .enumeration(value), let .interval(value):
            appendBE(4, bytes: 4, to: &out)
            appendBE(UInt64(value), bytes: 4, to: &out)
            pad(4, &out)
        case let .boolean(value):
            appendBE(8, bytes: 4, to: &out)
            appendBE(value ? 1 : 0, bytes: 8, to: &out)
        case let .textString(text):
            let bytes = Array(text.utf8)
            appendBE(UInt64(bytes.count), bytes: 4, to: &out)
            out += bytes
            pad(bytes.count, &out)
        case let .byteString(bytes):
            appendBE(UInt64(bytes.count), bytes: 4, to: &out)
            out += bytes
            pad(bytes.count, &out)
        }
    }

    private static func appendBE<T: FixedWidthInteger>(_ value: T, bytes: Int, to out: inout [UInt8]) {
        let wide = UInt64(truncatingIfNeeded: value)
        for index in stride(from: bytes - 1, through: 0, by: -1) {
            out.append(UInt8(truncatingIfNeeded: wide >> (8 * UInt64(index))))
        }
    }

    private static func pad(_ length: Int, _ out: inout [UInt8]) {
        let remainder = length % 8
        if remainder != 0 { out += [UInt8](repeating: 0, count: 8 - remainder) }
    }
}
