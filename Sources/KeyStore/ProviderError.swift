/// Why a provider could not wrap or unwrap a key. Each provider turns its own failures (AWS error
/// codes, OpenSSL) into one of these codes; the key store turns them into `KeyStoreError`.
public struct ProviderError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Transient: KMS down, throttled, timed out. Retry later.
        case unavailable
        /// The master key refuses us (access denied, disabled key).
        case denied
        /// The wrapped key does not authenticate or parse: never serve it.
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
