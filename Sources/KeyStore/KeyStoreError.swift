/// Why a key request failed, in words a DBA can act on; `code` decides the wire status. Providers
/// throw it too (as `ProviderError`); a store's failure becomes one with `init(_: StorageError)`.
public struct KeyStoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No such key or version, and none may be created.
        case notFound
        /// KMS or storage failed (down, throttled, timed out); a later retry may succeed.
        case unavailable
        /// The key service refuses us (access denied, disabled key, key pending deletion), or the
        /// broker cannot use it as configured (no credentials): fixed on the key service's side
        /// or in the broker's settings, never by the database. `serviceCode` says which.
        case refused
        /// The instance waits for `keybrokerctl unlock` (two-factor start).
        case locked
        /// A stored key does not authenticate or parse: it is never served.
        case corrupt
        case `internal`
    }

    public var code: Code
    public var message: String
    /// For `refused`: the service's own error code (`DisabledException`, KMIP's `PermissionDenied`).
    public var serviceCode: String?
    /// For `refused`: the master key concerned, as configured (alias, ARN, KMIP identifier).
    public var serviceKey: String?

    public init(_ code: Code, _ message: String, serviceCode: String? = nil, serviceKey: String? = nil) {
        self.code = code
        self.message = message
        self.serviceCode = serviceCode
        self.serviceKey = serviceKey
    }

    /// A storage failure: the store may answer again later.
    public init(_ error: StorageError) {
        self.init(.unavailable, error.description)
    }

    public var description: String { message }
}
