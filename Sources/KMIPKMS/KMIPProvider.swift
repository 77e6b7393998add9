import BrokerProtocol
import KeyStore
import KMIPProtocol
import Logging
import ProviderSettings
import SecureMemory
import Synchronization

/// Data keys made with OpenSSL's random generator, wrapped by a KMIP server with Encrypt under a
/// master key that never leaves it, unwrapped with Decrypt (KMIP 1.2–1.4 over mutual TLS). Stored
/// in `kmip-key.<id>.<version>` in the format of `KMIPKeyBlob`.
///
/// The wrapping mode is AES-GCM with the key's id and version as additional data when the
/// server speaks KMIP 1.4 (the first version whose messages carry the tag) and accepts it, else
/// AES-CBC with PKCS#5 padding; the check value in the blob authenticates the result either way.
/// Every new blob is decrypted once before it is stored.
public final class KMIPProvider: KeyProvider, KeyWrappingProvider, RewrappingProvider, StartupCheckingProvider, StatusReportingProvider {
    public let name = "kmip"
    public let fileNamePrefix = "kmip-key"

    public let instance: String
    public let settings: KMIPSettings
    let client: KMIPClient
    let masterKey: MasterKeyReference?
    let logger: Logger
    private let resolved = Mutex<String?>(nil)
    let gcmRefused = Atomic<Bool>(false)
    private let note = Mutex<String?>(nil)
    let batcher: DecryptBatcher

    public var canCreateKeys: Bool { masterKey != nil }

    /// Loads the CA file, the client certificate and key; no connection is made yet, so a server
    /// that is down does not stop start-up.
    public init(instance: String, settings: KMIPSettings, clientKey: SecureBytes, logger: Logger) throws(KMIPError) {
        var logger = logger
        logger[metadataKey: "instance"] = "\(instance)"
        self.instance = instance
        self.settings = settings
        self.logger = logger
        masterKey = settings.masterKeyID.flatMap(MasterKeyReference.init(parsing:))
        let context = try TLSContext(caFile: settings.caFile, certificateFile: settings.clientCertificateFile, key: clientKey)
        let transport = KMIPTransport(servers: settings.servers, context: context, threads: min(64, max(2, settings.concurrency)),
                                      timeoutMilliseconds: settings.requestTimeoutMilliseconds, logger: logger)
        let maximum = ProtocolVersion.supported.first { $0.description == settings.maximumVersion } ?? .v1_4
        client = KMIPClient(transport: transport, maxRetries: settings.maxRetries, maximumVersion: maximum, logger: logger)
        batcher = DecryptBatcher(client: client, batchSize: settings.batchSize, concurrency: settings.concurrency)
        if case let .uniqueIdentifier(id) = masterKey { resolved.withLock { $0 = id } }
    }

    public var summary: String {
        "KMIP at \(settings.servers.map(\.description).joined(separator: ", ")), master key \(masterKey?.description ?? "(none: stored keys only)")"
    }

    public var statusNote: String? { note.withLock { $0 } }

    public var masterKeyName: String? { masterKey?.description }
    public var masterKeyLocation: String? { settings.servers.map(\.description).joined(separator: ", ") }

    // MARK: KeyProvider

    public func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes) {
        guard (1...255).contains(length) else { throw ProviderError(.internal, "data key length \(length) is out of range") }
        let key: SecureBytes
        do { key = try Randomness.secret(length) } catch { throw ProviderError(.internal, error.description) }
        let wrapped = try await wrapDataKey(key, for: ref)
        logger.info("wrapped new data key id=\(ref.keyID), version=\(ref.version) under KMIP master key \(masterKey?.description ?? "?")",
                    metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
        return (wrapped, key)
    }

    public func wrapDataKey(_ key: SecureBytes, for ref: KeyRef) async throws(ProviderError) -> [UInt8] {
        guard let masterKey else {
            throw ProviderError(.notFound, "instance \"\(instance)\" has no master_key_id, so it cannot create \(ref); set master_key_id in [instances.\(instance)]")
        }
        do throws(KMIPError) {
            let uid = try await resolveMasterKey(masterKey)
            let blob = try await encrypt(key, ref: ref, uid: uid)
            // The first Decrypt proves the server keeps what it wraps (a server that drops the GCM
            // tag, or wraps under a key it cannot use again, fails here, before anything is stored).
            let check = try await decrypt(blob, ref: ref, path: "the new \(ref)")
            guard check.isEqual(to: key) else {
                throw KMIPError(.malformed, server: nil, message: "the server's Decrypt of a new data key does not give the key back")
            }
            return blob.encoded
        } catch {
            throw await explain(error, ref: ref, masterKey: masterKey.description)
        }
    }

    public func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes {
        let blob: KMIPKeyBlob
        do {
            blob = try KMIPKeyBlob(decoding: wrapped)
        } catch {
            throw ProviderError(.corrupt, "key file \(path) is corrupt: \(error.description)")
        }
        do throws(KMIPError) {
            return try await decrypt(blob, ref: ref, path: path)
        } catch {
            var failure = await explain(error, ref: ref, masterKey: blob.masterKeyID)
            if failure.code == .corrupt {
                failure.message = "key file \(path) cannot be unwrapped (\(error.description)); it is damaged, or was wrapped under another master key"
            } else {
                failure.message = "cannot unwrap \(ref) (\(path)): \(failure.message)"
            }
            throw failure
        }
    }

    /// Rewrap within KMIP: Decrypt under the master key in the blob, Encrypt under `target`.
    public func rewrapDataKey(_ wrapped: [UInt8], to target: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8] {
        guard let reference = MasterKeyReference(parsing: target) else {
            throw ProviderError(.refused, "\"\(target)\" is not a KMIP Unique Identifier or name:NAME")
        }
        let key = try await unwrapDataKey(wrapped, for: ref, path: path)
        do throws(KMIPError) {
            let uid = try await resolveMasterKey(reference, remember: false)
            return try await encrypt(key, ref: ref, uid: uid).encoded
        } catch {
            throw await explain(error, ref: ref, masterKey: target)
        }
    }

    public func prepare() async {
        guard let masterKey else {
            logger.notice("no master_key_id: serving stored keys only; new key ids and rotations are refused")
            return
        }
        do throws(KMIPError) {
            let version = try await client.version()
            let uid = try await resolveMasterKey(masterKey)
            let check = try await inspect(uid)
            let problems = check.problems
            if problems.isEmpty {
                logger.info("KMIP master key \(masterKey) is object \(uid): \(check.summary); KMIP \(version)")
                setNote("master key \(uid): \(check.summary)")
            } else {
                let text = problems.joined(separator: "; ")
                logger.warning("KMIP master key \(masterKey) (object \(uid)) cannot wrap keys: \(text); stored keys are still served if the server unwraps them")
                setNote("master key \(uid): \(text)")
            }
        } catch {
            let failure = await explain(error, ref: nil, masterKey: masterKey.description)
            logger.warning("cannot check KMIP master key \(masterKey): \(failure.message); stored keys are still served if the server unwraps them")
            setNote("master key check failed: \(failure.message)")
        }
    }

    var resolvedMasterKey: String? { resolved.withLock { $0 } }

    func rememberMasterKey(_ uid: String) {
        resolved.withLock { $0 = uid }
    }

    /// A name is looked up again after the object it named went away.
    func forgetMasterKey() {
        if case .name = masterKey { resolved.withLock { $0 = nil } }
    }

    private func setNote(_ text: String) {
        note.withLock { $0 = text }
    }
}
