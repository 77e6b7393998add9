import KMS

/// The small JSON documents of STATUS, written without Foundation.
enum JSONValue {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null
    case object([(String, JSONValue)])
    case array([JSONValue])

    var serialized: String {
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
