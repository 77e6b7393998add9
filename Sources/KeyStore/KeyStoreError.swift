/// Why a key request failed, in words a DBA can act on; `code` decides the wire status. Built from
/// the layers below with `init(_: ProviderError)` and `init(_: StorageError)`.
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

    /// The provider's failure, with the same code and message.
    public init(_ error: ProviderError, message: String? = nil) {
        let code: Code = switch error.code {
        case .unavailable: .unavailable
        case .denied: .denied
        case .corrupt: .corrupt
        case .internal: .internal
        }
        self.init(code, message ?? error.message)
    }

    /// A storage failure: the store may answer again later.
    public init(_ error: StorageError) {
        self.init(.unavailable, error.description)
    }

    public var description: String { message }
}
