/// Lower-case hexadecimal, for fingerprints, signatures and key files. Secrets are encoded to and
/// decoded from byte arrays (which the caller zeroes), never to Strings.
public enum Hex {
    private static let lowerDigits = Array("0123456789abcdef".utf8)
    private static let upperDigits = Array("0123456789ABCDEF".utf8)

    /// Two ASCII digits per byte.
    public static func encodedBytes(_ bytes: some Sequence<UInt8>, uppercase: Bool = false) -> [UInt8] {
        let digits = uppercase ? upperDigits : lowerDigits
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return out
    }

    public static func encode(_ bytes: some Sequence<UInt8>, uppercase: Bool = false) -> String {
        String(decoding: encodedBytes(bytes, uppercase: uppercase), as: UTF8.self)
    }

    /// The value of one hex digit (either case), or nil.
    public static func value(of digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
