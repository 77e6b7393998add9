/// One version of one data key, `key_id:u32 version:u32` on the wire: what GET_KEY asks for, what
/// ROTATE answers with, what a store names a file by and a provider binds a wrapped key to.
public struct KeyRef: Hashable, Sendable, CustomStringConvertible {
    public var keyID: UInt32
    public var version: UInt32

    public init(keyID: UInt32, version: UInt32) {
        self.keyID = keyID
        self.version = version
    }

    /// One word hashed rather than two: the cached GET_KEY path hashes a KeyRef per request.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(UInt64(keyID) << 32 | UInt64(version))
    }

    public var description: String { "key \(keyID) version \(version)" }

    /// Every version of an index (versions per key id), ordered by key id, then version.
    public static func all(in index: [UInt32: [UInt32]]) -> [KeyRef] {
        index.flatMap { id, versions in versions.map { KeyRef(keyID: id, version: $0) } }
            .sorted { ($0.keyID, $0.version) < ($1.keyID, $1.version) }
    }
}
