/// The backslash escapes that JSON string literals (`JSONText`) and the broker's quoted peer text
/// (`PeerText`) write alike: `\"`, `\\`, `\n`, `\r` and `\t`. Each writer escapes the rest its
/// own way (JSON `\u00NN`; peer text `\xNN`, `\u{NNNN}`).
public enum BackslashEscape {
    /// The escape of `scalar`, or nil when it is none of the five.
    @inlinable
    public static func of(_ scalar: Unicode.Scalar) -> String? {
        switch scalar {
        case "\"": "\\\""
        case "\\": "\\\\"
        case "\n": "\\n"
        case "\r": "\\r"
        case "\t": "\\t"
        default: nil
        }
    }
}
