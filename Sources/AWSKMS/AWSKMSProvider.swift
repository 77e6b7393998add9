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
public final class AWSKMSProvider: KeyProvider, StartupCheckingProvider, UnlockableProvider, RewrappingProvider, StatusReportingProvider {
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
        let http = HTTPClient(threads: min(64, max(2, settings.concurrency)))
        let credentialEnvironment = CredentialEnvironment(variables: environment, profileSetting: settings.profile)
        let region = try await resolveRegion(settings: settings, environment: credentialEnvironment, http: http, instance: instance)
        func endpoint(_ explicit: String?, setting: String, variable: String, service: String) throws(AWSSetupError) -> Endpoint {
            if let text = explicit ?? credentialEnvironment[variable] ?? credentialEnvironment["AWS_ENDPOINT_URL"] {
                guard let parsed = Endpoint(parsing: text) else {
                    throw AWSSetupError(setting: setting, message: "\(text) is not an http:// or https:// URL")
                }
                return parsed
            }
            guard let parsed = Endpoint.aws(service: service, region: region, fips: settings.useFIPSEndpoint) else {
                throw AWSSetupError(setting: "region", message: "region \"\(region)\" does not make a valid endpoint name")
            }
            return parsed
        }
        let kmsEndpoint = try endpoint(settings.endpointURL, setting: "endpoint_url", variable: "AWS_ENDPOINT_URL_KMS", service: "kms")
        let stsEndpoint = try endpoint(settings.stsEndpointURL, setting: "sts_endpoint_url", variable: "AWS_ENDPOINT_URL_STS", service: "sts")
        return AWSKMSProvider(instance: instance, settings: settings, region: region, kmsEndpoint: kmsEndpoint, stsEndpoint: stsEndpoint,
                              environment: credentialEnvironment, http: http, logger: logger)
    }

    /// Instance setting, AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`, EC2 instance metadata.
    static func resolveRegion(settings: AWSSettings, environment: CredentialEnvironment, http: HTTPClient,
                              instance: String) async throws(AWSSetupError) -> String {
        func checked(_ region: String, _ source: String) throws(AWSSetupError) -> String {
            guard AWSSettings.isValidRegion(region) else {
                throw AWSSetupError(setting: "region", message: "region \"\(region)\" from \(source) is not a region name (like us-east-1)")
            }
            return region
        }
        if let region = settings.region { return try checked(region, "the region setting") }
        if let region = environment["AWS_REGION"] { return try checked(region, "AWS_REGION") }
        if let region = environment["AWS_DEFAULT_REGION"] { return try checked(region, "AWS_DEFAULT_REGION") }
        do {
            if let profiles = try environment.systemdProfiles(), let region = profiles.value("region", profile: environment.profileName) {
                return try checked(region, "profile \(environment.profileName) in \(profiles.paths)")
            }
            let shared = try environment.sharedProfiles()
            if let region = shared.value("region", profile: environment.profileName) {
                return try checked(region, "profile \(environment.profileName) in \(shared.paths)")
            }
        } catch let error as AWSSetupError {
            throw error
        } catch {
            throw AWSSetupError(setting: "region", message: "\(error)")
        }
        if let region = await InstanceMetadataClient(environment: environment, http: http).region() {
            return try checked(region, "EC2 instance metadata")
        }
        throw AWSSetupError(setting: "region", message: "no AWS region is configured: set region = \"us-east-1\" (for example) in [instances.\(instance)], or AWS_REGION, or region in the AWS profile \"\(environment.profileName)\"; the EC2 instance metadata service did not answer either")
    }

    private init(instance: String, settings: AWSSettings, region: String, kmsEndpoint: Endpoint, stsEndpoint: Endpoint,
                 environment: CredentialEnvironment, http: HTTPClient, logger: Logger) {
        self.instance = instance
        self.settings = settings
        self.region = region
        self.kmsEndpoint = kmsEndpoint
        self.stsEndpoint = stsEndpoint
        self.logger = logger
        let requester = AWSRequester(http: http, timeoutMilliseconds: settings.requestTimeoutMilliseconds,
                                     maxRetries: settings.maxRetries, logger: logger)
        let sts = STSClient(requester: requester, endpoint: stsEndpoint, region: region)
        self.sts = sts
        let chain = CredentialChain(environment: environment, sts: sts, http: http, logger: logger)
        let cache = CredentialCache(logger: logger) { () throws(AWSError) in try await chain.resolve() }
        self.credentials = cache
        let twoFactor = settings.mfaSerial.map { TwoFactorSession(serial: $0, sts: sts, base: cache, logger: logger) }
        self.twoFactor = twoFactor
        let kmsCredentials: AWSRequester.Credentials
        if let twoFactor {
            kmsCredentials = AWSRequester.Credentials(get: { () throws(AWSError) in try twoFactor.current() }, invalidate: {})
        } else {
            kmsCredentials = AWSRequester.Credentials(get: { () throws(AWSError) in try await cache.get() }, invalidate: { await cache.invalidate() })
        }
        self.kms = KMSClient(requester: requester, endpoint: kmsEndpoint, region: region, credentials: kmsCredentials)
        if twoFactor != nil {
            note.withLock { $0 = "locked: waiting for keybrokerctl unlock --instance \(instance) --token-code NNNNNN" }
        }
    }

    public var statusNote: String? { note.withLock { $0 } }

    /// One line describing where this instance's keys live, for the start-up log.
    public var summary: String {
        "AWS KMS in \(region) at \(kmsEndpoint.host), master key \(settings.masterKeyID ?? "(none: stored keys only)")\(twoFactor != nil ? ", two-factor start" : "")"
    }

    // MARK: KeyProvider

    public func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes) {
        guard let masterKeyID = settings.masterKeyID else {
            throw ProviderError(.denied, "instance \"\(instance)\" has no master_key_id, so it cannot create \(ref); set master_key_id in [instances.\(instance)]")
        }
        do throws(AWSError) {
            let blob = try await kms.generateDataKeyWithoutPlaintext(keyID: masterKeyID, length: length)
            logger.info("generated encrypted datakey for key id=\(ref.keyID), version=\(ref.version) under \(masterKeyID)",
                        metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
            let key = try await kms.decrypt(blob)
            guard key.count == length else {
                throw AWSError(.malformed, operation: "KMS Decrypt", message: "the new data key has \(key.count) bytes, not \(length)")
            }
            return (blob, key)
        } catch {
            throw ProviderError(error)
        }
    }

    public func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes {
        guard !wrapped.isEmpty else { throw ProviderError(.corrupt, "key file \(path) is empty") }
        let key: SecureBytes
        do {
            key = try await kms.decrypt(wrapped)
        } catch {
            var failure = ProviderError(error)
            if failure.code == .corrupt {
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

    public func rewrapDataKey(_ wrapped: [UInt8], to masterKey: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8] {
        do {
            return try await kms.reEncrypt(wrapped, to: masterKey).blob
        } catch {
            var failure = ProviderError(error)
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
            throw ProviderError(.denied, "a token code is 6 digits")
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
