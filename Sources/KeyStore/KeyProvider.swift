import BrokerProtocol
import SecureMemory

/// Wraps and unwraps data keys under a master key that the provider holds (a local file, AWS KMS).
/// The key store decides when; the provider only does the cryptography or the remote call.
///
/// What only some providers can do is a protocol of its own below (`RewrappingProvider`,
/// `UnlockableProvider`, …): callers ask `provider as? any UnlockableProvider`, so a provider
/// declares what it does instead of inheriting methods that throw "not supported".
public protocol KeyProvider: Sendable {
    /// The name used in the config (`provider = "local"`).
    var name: String { get }
    /// Key files of this provider are named `<fileNamePrefix>.<id>.<version>`.
    var fileNamePrefix: String { get }

    /// Whether the provider can create data keys (the AWS provider without `master_key_id` cannot).
    var canCreateKeys: Bool { get }

    /// A new random data key of `length` bytes and its wrapped form, to be stored.
    func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes)

    /// Unwraps a stored data key. `path` is for error messages.
    func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes

    /// The master key as configured (`alias/mariadb-encryption`, a KMIP identifier, a key file),
    /// for INFO and the plugin's status variables; nil when there is none.
    var masterKeyName: String? { get }
    /// Where the master key lives (the AWS region, the KMIP servers); nil when it is this host.
    var masterKeyLocation: String? { get }
}

extension KeyProvider {
    public var canCreateKeys: Bool { true }
    public var masterKeyName: String? { nil }
    public var masterKeyLocation: String? { nil }
}

/// Start-up checks that must not stop the daemon (the master key's state in the KMS): they log
/// what they find. With two-factor start this waits until the instance is unlocked.
public protocol StartupCheckingProvider: KeyProvider {
    func prepare() async
}

/// Two-factor start: the instance serves keys only after an admin unlocks it with a one-time code.
public protocol UnlockableProvider: KeyProvider {
    /// Not unlocked since the broker started: nothing can be decrypted yet, so a client starting
    /// now waits (INFO answers LOCKED). After a session expired this is false again: keys already
    /// unwrapped are served, and only requests that need the key service answer LOCKED.
    var awaitsUnlock: Bool { get }
    /// Returns a sentence for the admin.
    func unlock(tokenCode: String) async throws(ProviderError) -> String
}

/// Wraps a stored key again under another master key without revealing it (KMS ReEncrypt), for
/// `keybrokerctl rewrap`. The key store verifies the result before it replaces the file.
public protocol RewrappingProvider: KeyProvider {
    func rewrapDataKey(_ wrapped: [UInt8], to masterKey: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8]
}

/// A provider with more to say than its name.
public protocol StatusReportingProvider: KeyProvider {
    /// One line for the start-up log: where the master key lives.
    var summary: String { get }
    /// One line for STATUS (`provider_status`): locked, master key state; nil when there is nothing to say.
    var statusNote: String? { get }
}

/// Wraps a data key the provider did not make (KMS Encrypt, KMIP Encrypt, local sealing): what
/// moving a key set into an instance of this provider needs (`keybrokerctl rewrap --into`).
public protocol KeyWrappingProvider: KeyProvider {
    func wrapDataKey(_ key: SecureBytes, for ref: KeyRef) async throws(ProviderError) -> [UInt8]
}
