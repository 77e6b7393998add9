/// One data key version of one instance: what a provider binds a wrapped key to.
public struct KeyRef: Hashable, Sendable, CustomStringConvertible {
    public var keyID: UInt32
    public var version: UInt32

    public init(keyID: UInt32, version: UInt32) {
        self.keyID = keyID
        self.version = version
    }

    public var description: String { "key \(keyID) version \(version)" }
}
