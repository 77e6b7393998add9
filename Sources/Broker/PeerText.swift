import SystemSupport

/// Strings a peer sent (client and instance names, admin words) as they may appear in a log line
/// or an answer: cut to a few dozen characters and escaped, so a peer can neither grow the log by
/// the size of its frames nor write a line of its own with a newline or a terminal escape.
enum PeerText {
    static let defaultLimit = 64

    /// `text` in double quotes; printable ASCII as is, `"` and `\` escaped, every other character
    /// as `\n`, `\t`, `\r`, `\xNN` or `\u{NNNN}`. A longer string ends in `...` and its size.
    static func quoted(_ text: String, limit: Int = defaultLimit) -> String {
        var out = "\""
        var count = 0
        var truncated = false
        for scalar in text.unicodeScalars {
            if count == limit {
                truncated = true
                break
            }
            count += 1
            if let escape = BackslashEscape.of(scalar) {
                out += escape
                continue
            }
            switch scalar {
            case " "..."~": out.unicodeScalars.append(scalar)
            default:
                let hex = String(scalar.value, radix: 16)
                if scalar.value < 0x80 {
                    out += "\\x" + (hex.count < 2 ? "0" : "") + hex
                } else {
                    out += "\\u{" + hex + "}"
                }
            }
        }
        out += "\""
        if truncated { out += "...(\(text.utf8.count) bytes)" }
        return out
    }
}
