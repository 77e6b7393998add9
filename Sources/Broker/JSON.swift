/// The small JSON documents of STATUS, written without Foundation.
enum JSONValue {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null
    case object([(String, JSONValue)])
    case array([JSONValue])

    static func quoted(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    var serialized: String {
        switch self {
        case let .string(s): JSONValue.quoted(s)
        case let .int(i): String(i)
        case let .bool(b): b ? "true" : "false"
        case .null: "null"
        case let .object(members): "{" + members.map { JSONValue.quoted($0.0) + ":" + $0.1.serialized }.joined(separator: ",") + "}"
        case let .array(items): "[" + items.map(\.serialized).joined(separator: ",") + "]"
        }
    }
}
