/// The small JSON documents keybroker writes (STATUS, ADMIN answers, KMS request bodies), without
/// Foundation. Members keep the order given.
public enum JSONValue: Sendable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null
    case object([(String, JSONValue)])
    case array([JSONValue])

    public var serialized: String {
        switch self {
        case let .string(s): JSONText.quoted(s)
        case let .int(i): String(i)
        case let .bool(b): b ? "true" : "false"
        case .null: "null"
        case let .object(members): "{" + members.map { JSONText.quoted($0.0) + ":" + $0.1.serialized }.joined(separator: ",") + "}"
        case let .array(items): "[" + items.map(\.serialized).joined(separator: ",") + "]"
        }
    }
}

/// JSON string literals.
public enum JSONText {
    public static func quoted(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            if let escape = BackslashEscape.of(scalar) {
                out += escape
            } else if scalar.value < 0x20 {
                out += "\\u00" + Hex.encode([UInt8(scalar.value)])
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
