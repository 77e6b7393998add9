import SecureMemory

/// Wraps and unwraps data keys under a master key that the provider holds (a local file, AWS KMS).
/// The key store decides when; the provider only does the cryptography or the remote call.
public protocol KeyProvider: Sendable {
    /// The name used in the config (`provider = "local"`).
    var name: String { get }
    /// Key files of this provider are named `<fileNamePrefix>.<id>.<version>`.
    var fileNamePrefix: String { get }

    /// A new random data key of `length` bytes and its wrapped form, to be stored on disk.
    func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes)

    /// Unwraps a stored data key. `path` is for error messages.
    func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes
}

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
