/// Why a key request failed, in words a DBA can act on; `code` decides the wire status.
public struct KeyStoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No such key or version, and none may be created.
        case notFound
        /// KMS or storage failed; a later retry may succeed.
        case unavailable
        case denied
        /// A stored key failed authentication: it is never served.
        case corrupt
        case `internal`
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
