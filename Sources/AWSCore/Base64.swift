import SecureMemory

/// Standard base64 (RFC 4648, with padding), as KMS uses for blobs and plaintexts. Decoding of
/// secrets writes straight into locked memory.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: encodedBytes(bytes), as: UTF8.self)
    }

    /// The encoding as bytes the caller can zero (for a plaintext key sent to KMS Encrypt).
    public static func encodedBytes(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let first = iterator.next() {
            let second = iterator.next()
            let third = iterator.next()
            let value = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
            out.append(alphabet[Int(value >> 18 & 63)])
            out.append(alphabet[Int(value >> 12 & 63)])
            out.append(second == nil ? UInt8(ascii: "=") : alphabet[Int(value >> 6 & 63)])
            out.append(third == nil ? UInt8(ascii: "=") : alphabet[Int(value & 63)])
        }
        return out
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    /// Decoded length of well-formed base64 text, or nil.
    public static func decodedLength(_ text: UnsafeRawBufferPointer) -> Int? {
        guard text.count % 4 == 0 else { return nil }
        var padding = 0
        if text.count >= 1, text[text.count - 1] == UInt8(ascii: "=") { padding += 1 }
        if text.count >= 2, text[text.count - 2] == UInt8(ascii: "=") { padding += 1 }
        for index in 0..<(text.count - padding) where value(text[index]) == nil { return nil }
        return text.count / 4 * 3 - padding
    }

    /// Decodes validated text (see `decodedLength`) into `out`.
    private static func decode(_ text: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        var position = 0
        var index = 0
        while index + 4 <= text.count {
            var group: UInt32 = 0
            var count = 0
            for offset in 0..<4 {
                if let v = value(text[index + offset]) {
                    group = group << 6 | UInt32(v)
                    count += 1
                } else {
                    group <<= 6
                }
            }
            // No temporary array: the decoded bytes may be a data key.
            for shift in [16, 8, 0].prefix(max(0, count - 1)) where position < out.count {
                out[position] = UInt8(truncatingIfNeeded: group >> UInt32(shift))
                position += 1
            }
            group = 0
            index += 4
        }
    }

    public static func decode(_ text: [UInt8]) -> [UInt8]? {
        text.withUnsafeBytes { raw in
            guard let length = decodedLength(raw) else { return nil }
            var out = [UInt8](repeating: 0, count: length)
            out.withUnsafeMutableBytes { decode(raw, into: $0) }
            return out
        }
    }

    /// Decodes into locked memory; the text itself is the caller's to zero.
    public static func decodeSecret(_ text: UnsafeRawBufferPointer) -> SecureBytes? {
        guard let length = decodedLength(text) else { return nil }
        return SecureBytes(count: length) { decode(text, into: $0) }
    }
}
