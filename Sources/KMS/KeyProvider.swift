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

    /// Whether the provider can create data keys (the AWS provider without `master_key_id` cannot).
    var canCreateKeys: Bool { get }

    /// Wraps a stored key again under another master key without revealing it (KMS ReEncrypt), for
    /// `keybrokerctl rewrap`. The caller verifies the result before replacing the file.
    func rewrapDataKey(_ wrapped: [UInt8], to masterKey: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8]

    /// Start-up checks that must not stop the daemon (the master key's state in the KMS): they log
    /// what they find. With two-factor start this waits until the instance is unlocked.
    func prepare() async

    /// Two-factor start: unlocks the instance with a one-time code. Returns a sentence for the admin.
    func unlock(tokenCode: String) async throws(ProviderError) -> String

    /// One line for STATUS (`provider_status`): locked, master key state; nil when there is nothing to say.
    var statusNote: String? { get }
}

extension KeyProvider {
    public var canCreateKeys: Bool { true }

    public func rewrapDataKey(_ wrapped: [UInt8], to masterKey: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8] {
        throw ProviderError(.internal, "provider \"\(name)\" cannot re-wrap keys under another master key")
    }

    public func prepare() async {}

    public func unlock(tokenCode: String) async throws(ProviderError) -> String {
        throw ProviderError(.internal, "provider \"\(name)\" has no two-factor start; there is nothing to unlock")
    }

    public var statusNote: String? { nil }
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
