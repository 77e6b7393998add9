import SystemSupport

/// JSON text for request bodies.
public enum JSONWriter {
    /// `{"a":"b",...}` from string members, in the order given.
    public static func object(_ members: [(String, String)]) -> [UInt8] {
        Array(JSONValue.object(members.map { ($0.0, .string($0.1)) }).serialized.utf8)
    }
}
