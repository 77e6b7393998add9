/// Why a key request failed, in words a DBA can act on; `code` decides the wire status. Providers
/// throw it too (as `ProviderError`); a store's failure becomes one with `init(_: StorageError)`.
public struct KeyStoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No such key or version, and none may be created.
        case notFound
        /// KMS or storage failed (down, throttled, timed out); a later retry may succeed.
        case unavailable
        /// The master key refuses us (access denied, disabled key).
        case denied
        /// A stored key does not authenticate or parse: it is never served.
        case corrupt
        case `internal`
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A storage failure: the store may answer again later.
    public init(_ error: StorageError) {
        self.init(.unavailable, error.description)
    }

    public var description: String { message }
}
