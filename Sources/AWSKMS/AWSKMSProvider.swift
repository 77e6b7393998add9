import AWSCore
import BrokerProtocol
import KeyStore
import Logging
import ProviderSettings
import SecureMemory
import Synchronization
import SystemSupport

/// Data keys wrapped by AWS KMS, stored as the raw CiphertextBlob in `aws-kms-key.<id>.<version>`:
/// byte for byte what MariaDB's aws_key_management plugin writes, so files move both ways.
///
/// New keys: GenerateDataKeyWithoutPlaintext, then Decrypt of the blob (as aws_key_management does:
/// the plaintext only ever comes from Decrypt). Stored keys: Decrypt. Rewrap: ReEncrypt.
public final class AWSKMSProvider: KeyProvider, StartupCheckingProvider, UnlockableProvider, RewrappingProvider, KeyWrappingProvider,
    StatusReportingProvider {
    public let name = "aws"
    public let fileNamePrefix = "aws-kms-key"

    public let instance: String
    public let settings: AWSSettings
    public let region: String
    public let kmsEndpoint: Endpoint
    public let stsEndpoint: Endpoint
    private let kms: KMSClient
    private let sts: STSClient
    private let credentials: CredentialCache
    private let twoFactor: TwoFactorSession?
    private let logger: Logger
    private let note = Mutex<String?>(nil)

    public var canCreateKeys: Bool { settings.masterKeyID != nil }

    /// Resolves the region and the endpoints (a missing region is an error); credentials are
    /// fetched on first use, so a metadata service that is slow to come up does not stop start-up.
    public static func make(instance: String, settings: AWSSettings, environment: [String: String],
                            logger: Logger) async throws(AWSSetupError) -> AWSKMSProvider {
        var logger = logger
        logger[metadataKey: "instance"] = "\(instance)"
        let session = try await AWSSession.make(instance: instance, settings: settings, environment: environment, logger: logger)
        let kmsEndpoint = try session.endpoint(settings.endpointURL, setting: "endpoint_url", variable: "AWS_ENDPOINT_URL_KMS", service: "kms")
        return AWSKMSProvider(instance: instance, settings: settings, session: session, kmsEndpoint: kmsEndpoint, logger: logger)
    }

    private init(instance: String, settings: AWSSettings, session: AWSSession, kmsEndpoint: Endpoint, logger: Logger) {
        self.instance = instance
        self.settings = settings
        self.region = session.region
        self.kmsEndpoint = kmsEndpoint
        self.stsEndpoint = session.stsEndpoint
        self.logger = logger
        self.sts = session.sts
        let cache = session.credentials
        self.credentials = cache
        let twoFactor = settings.mfaSerial.map { TwoFactorSession(serial: $0, sts: session.sts, base: cache, logger: logger) }
        self.twoFactor = twoFactor
        let kmsCredentials: AWSRequester.Credentials
        if let twoFactor {
            kmsCredentials = AWSRequester.Credentials(get: { () throws(AWSError) in try twoFactor.current() }, invalidate: {})
        } else {
            kmsCredentials = session.requestCredentials
        }
        self.kms = KMSClient(requester: session.requester, endpoint: kmsEndpoint, region: region, credentials: kmsCredentials)
        if twoFactor != nil {
            note.withLock { $0 = "locked: waiting for keybrokerctl unlock --instance \(instance) --token-code NNNNNN" }
        }
    }

    public var statusNote: String? { note.withLock { $0 } }

    public var masterKeyName: String? { settings.masterKeyID }
    public var masterKeyLocation: String? { region }
    public var awaitsUnlock: Bool { twoFactor?.awaitsUnlock ?? false }

    /// One line describing where this instance's keys live, for the start-up log.
    public var summary: String {
        "AWS KMS in \(region) at \(kmsEndpoint.host), master key \(settings.masterKeyID ?? "(none: stored keys only)")\(twoFactor != nil ? ", two-factor start" : "")"
    }

    // MARK: KeyProvider

    public func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes) {
        guard let masterKeyID = settings.masterKeyID else {
            throw ProviderError(.notFound, "instance \"\(instance)\" has no master_key_id, so it cannot create \(ref); set master_key_id in [instances.\(instance)]")
        }
        do throws(AWSError) {
            let context = newKeyContext(ref)
            let blob = try await kms.generateDataKeyWithoutPlaintext(keyID: masterKeyID, length: length, for: ref, context: context?.kmsPairs)
            logger.info("generated encrypted datakey for key id=\(ref.keyID), version=\(ref.version) under \(masterKeyID)\(context == nil ? "" : " with an encryption context")",
                        metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
            let key = try await kms.decrypt(blob, for: ref, context: context?.kmsPairs)
            guard key.count == length else {
                throw AWSError(.malformed, operation: "KMS Decrypt", message: "the new data key has \(key.count) bytes, not \(length)")
            }
            return (context.map { AWSKeyBlob.encode(blob, context: $0) } ?? blob, key)
        } catch {
            throw ProviderError(error, key: masterKeyID)
        }
    }

    /// The context a new version gets (`encryption_context = true`), nil without one.
    private func newKeyContext(_ ref: KeyRef) -> AWSKeyBlob.Context? {
        settings.encryptionContext ? AWSKeyBlob.Context(instance: instance, ref: ref) : nil
    }

    /// The blob and the context it must be decrypted with: the one its name (instance, key id,
    /// version) gives, never the one its header claims.
    private func parse(_ wrapped: [UInt8], for ref: KeyRef, path: String) throws(ProviderError) -> (blob: [UInt8], expected: AWSKeyBlob.Context?, recorded: AWSKeyBlob.Context?) {
        do {
            switch try AWSKeyBlob.parse(wrapped) {
            case let .raw(blob): return (blob, nil, nil)
            case let .withContext(recorded, blob): return (blob, AWSKeyBlob.Context(instance: instance, ref: ref), recorded)
            }
        } catch {
            throw ProviderError(.corrupt, "key file \(path) cannot be read: \(error.message)")
        }
    }

    public func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes {
        guard !wrapped.isEmpty else { throw ProviderError(.corrupt, "key file \(path) is empty") }
        let (blob, expected, recorded) = try parse(wrapped, for: ref, path: path)
        let key: SecureBytes
        do {
            key = try await kms.decrypt(blob, for: ref, context: expected?.kmsPairs)
        } catch {
            var failure = ProviderError(error, key: settings.masterKeyID)
            if failure.code == .corrupt, let recorded, let expected, recorded != expected {
                failure.message = "key file \(path) was wrapped for \(recorded.description) (encryption context), not for \(expected.description): it was renamed or copied from another key; KMS refuses it (\(error.description)). Put the file back under its own name"
            } else if failure.code == .corrupt {
                failure.message = "key file \(path) cannot be decrypted by KMS (\(error.description)); it is damaged, or was wrapped by a master key in another account or region"
            } else {
                failure.message = "cannot decrypt \(ref) (\(path)): \(error.description)"
            }
            throw failure
        }
        guard [16, 24, 32].contains(key.count) else {
            throw ProviderError(.corrupt, "key file \(path) decrypts to \(key.count) bytes, which is not an AES key length (16, 24 or 32)")
        }
        return key
    }

    /// KMS Encrypt under master_key_id: a key set moved here from another provider keeps its bytes.
    public func wrapDataKey(_ key: SecureBytes, for ref: KeyRef) async throws(ProviderError) -> [UInt8] {
        guard let masterKeyID = settings.masterKeyID else {
            throw ProviderError(.notFound, "instance \"\(instance)\" has no master_key_id to wrap \(ref) under; set master_key_id in [instances.\(instance)]")
        }
        do {
            let context = newKeyContext(ref)
            let blob = try await kms.encrypt(keyID: masterKeyID, plaintext: key, for: ref, context: context?.kmsPairs)
            return context.map { AWSKeyBlob.encode(blob, context: $0) } ?? blob
        } catch {
            var failure = ProviderError(error, key: masterKeyID)
            failure.message = "cannot wrap \(ref) under \(masterKeyID): \(error.description)"
            throw failure
        }
    }

    public func rewrapDataKey(_ wrapped: [UInt8], to masterKey: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8] {
        let (blob, expected, _) = try parse(wrapped, for: ref, path: path)
        do {
            let rewrapped = try await kms.reEncrypt(blob, to: masterKey, for: ref, context: expected?.kmsPairs).blob
            return expected.map { AWSKeyBlob.encode(rewrapped, context: $0) } ?? rewrapped
        } catch {
            var failure = ProviderError(error, key: masterKey)
            failure.message = "cannot re-encrypt \(ref) (\(path)) under \(masterKey): \(error.description)"
            throw failure
        }
    }

    public func prepare() async {
        if let twoFactor {
            logger.notice("instance \"\(instance)\" waits for two-factor start: run keybrokerctl unlock --instance \(instance) --token-code NNNNNN")
            await twoFactor.waitUntilUnlocked()
        }
        guard let masterKeyID = settings.masterKeyID else {
            logger.notice("no master_key_id: serving stored keys only; new key ids and rotations are refused")
            return
        }
        do throws(AWSError) {
            let description = try await kms.describeKey(masterKeyID)
            var problems: [String] = []
            if description.state != "Enabled" { problems.append("its state is \(description.state)") }
            if let usage = description.usage, usage != "ENCRYPT_DECRYPT" { problems.append("its usage is \(usage), not ENCRYPT_DECRYPT") }
            if description.spec != "SYMMETRIC_DEFAULT" { problems.append("its key spec is \(description.spec), not SYMMETRIC_DEFAULT") }
            if problems.isEmpty {
                logger.info("master key \(masterKeyID) is \(description.arn): Enabled, SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT")
                setNote(twoFactor == nil ? "master key \(description.arn): Enabled" : "unlocked; master key \(description.arn): Enabled")
            } else {
                let text = problems.joined(separator: ", ")
                logger.warning("master key \(masterKeyID) (\(description.arn)) cannot create keys: \(text); stored keys are still served if KMS decrypts them")
                setNote("master key \(description.arn): \(text)")
            }
        } catch {
            logger.warning("cannot check master key \(masterKeyID): \(error.description); stored keys are still served if KMS decrypts them")
            setNote("master key check failed: \(error.description)")
        }
    }

    private func setNote(_ text: String) {
        note.withLock { $0 = text }
    }

    public func unlock(tokenCode: String) async throws(ProviderError) -> String {
        guard let twoFactor else {
            throw ProviderError(.internal, "instance \"\(instance)\" has no mfa_serial; there is nothing to unlock")
        }
        guard tokenCode.count == 6, tokenCode.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ProviderError(.refused, "a token code is 6 digits")
        }
        do {
            let expiration = try await twoFactor.unlock(tokenCode: tokenCode)
            setNote("unlocked until \(CredentialCache.format(expiration))")
            return "instance \"\(instance)\" unlocked until \(CredentialCache.format(expiration))"
        } catch {
            throw ProviderError(error)
        }
    }
}

/// Two-factor start: KMS is used only with session credentials from STS GetSessionToken, obtained
/// with a one-time code from `keybrokerctl unlock`. They live only in this process's memory; when
/// they expire the instance is locked again (keys already decrypted stay served).
final class TwoFactorSession: Sendable {
    let serial: String
    private let sts: STSClient
    private let base: CredentialCache
    private let logger: Logger

    private struct State {
        var session: AWSCredentials?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    init(serial: String, sts: STSClient, base: CredentialCache, logger: Logger) {
        self.serial = serial
        self.sts = sts
        self.base = base
        self.logger = logger
    }

    func current() throws(AWSError) -> AWSCredentials {
        let session = state.withLock { $0.session }
        guard let session else {
            throw AWSError(.locked, operation: "two-factor start",
                           message: "the instance is locked until an admin runs: keybrokerctl unlock --token-code NNNNNN (two-factor start, mfa_serial)")
        }
        if session.expires(within: 0, now: unixNow()) {
            throw AWSError(.locked, operation: "two-factor start",
                           message: "the two-factor session expired at \(CredentialCache.format(session.expiration ?? 0)); run keybrokerctl unlock --token-code NNNNNN")
        }
        return session
    }

    /// No session yet: the instance was never unlocked since the broker started.
    var awaitsUnlock: Bool { state.withLock { $0.session == nil } }

    func waitUntilUnlocked() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.session != nil { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Returns the session's expiration.
    func unlock(tokenCode: String) async throws(AWSError) -> Int64 {
        let credentials = try await base.get()
        let session = try await sts.getSessionToken(serialNumber: serial, tokenCode: tokenCode, durationSeconds: nil, using: credentials)
        let expiration = session.expiration ?? unixNow() + 43200
        var stored = session
        stored.expiration = expiration
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.session = stored
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        logger.notice("unlocked with two-factor device \(serial) until \(CredentialCache.format(expiration)) (access key \(session.redactedAccessKeyID))")
        for waiter in waiters { waiter.resume() }
        return expiration
    }
}
