import BrokerProtocol
import KeyStore
import KMIPProtocol
import ProviderSettings
import SecureMemory

extension KMIPProvider {
    /// The Unique Identifier of `reference`: itself, or the one object Locate finds by name.
    func resolveMasterKey(_ reference: MasterKeyReference, remember: Bool = true) async throws(KMIPError) -> String {
        if remember, let uid = resolvedMasterKey { return uid }
        switch reference {
        case let .uniqueIdentifier(id):
            return id
        case let .name(name):
            let payload = try await client.callOne(Payloads.locate(name: name, objectType: .symmetricKey))
            let found = Payloads.identifiers(in: payload)
            guard let uid = found.first else {
                throw KMIPError(.operation(.locate, .itemNotFound), server: nil,
                                message: "no symmetric key named \"\(name)\" is visible to this client certificate")
            }
            guard found.count == 1 else {
                throw KMIPError(.operation(.locate, .illegalOperation), server: nil,
                                message: "\(found.count) keys are named \"\(name)\" (\(found.prefix(5).joined(separator: ", "))); set master_key_id to the Unique Identifier of the one to use")
            }
            if remember { rememberMasterKey(uid) }
            return uid
        }
    }

    func inspect(_ uid: String) async throws(KMIPError) -> MasterKeyCheck {
        let payload = try await client.callOne(Payloads.getAttributes(uid, names: MasterKeyCheck.attributeNames))
        return MasterKeyCheck(uniqueIdentifier: uid, attributes: Payloads.attributes(in: payload))
    }

    func encrypt(_ key: SecureBytes, ref: KeyRef, uid: String) async throws(KMIPError) -> KMIPKeyBlob {
        let version = try await client.version()
        let useGCM = version >= .v1_4 && !gcmRefused.load(ordering: .relaxed)
        if useGCM {
            do throws(KMIPError) {
                return try await encrypt(key, ref: ref, uid: uid, mode: .gcm, version: version)
            } catch {
                guard case let .operation(_, reason) = error.kind,
                      [.invalidField, .featureNotSupported, .operationNotSupported, .cryptographicFailure, .missingData].contains(reason)
                else { throw error }
                gcmRefused.store(true, ordering: .relaxed)
                logger.warning("KMIP server refuses AES-GCM (\(error.message)); wrapping with AES-CBC and a check value instead")
            }
        }
        return try await encrypt(key, ref: ref, uid: uid, mode: .cbcPKCS5, version: version)
    }

    private func encrypt(_ key: SecureBytes, ref: KeyRef, uid: String, mode: KMIPKeyBlob.Mode,
                         version: ProtocolVersion) async throws(KMIPError) -> KMIPKeyBlob {
        let plaintext = key.withUnsafeBytes { Array($0) }
        // Zeroed where it is: the request's tree still shares this storage, so cleanse() (which
        // would copy a shared array first) would zero only a copy.
        defer { plaintext.withUnsafeBytes { KMIPSecrets.zero($0) } }
        let binding = KMIPKeyBlob.binding(ref)
        // GCM: the server makes the IV (FIPS 140 wants it made inside the module). CBC: ours.
        let iv: [UInt8]?
        if mode == .cbcPKCS5 {
            do { iv = try Randomness.bytes(16) } catch { throw KMIPError(.setup, server: nil, message: error.description) }
        } else {
            iv = nil
        }
        let item = Payloads.encrypt(uid, parameters: mode.parameters, data: plaintext, iv: iv,
                                    additionalData: mode == .gcm ? binding : nil)
        let payload = try await client.callOne(item)
        guard let encrypted = Payloads.encrypted(in: payload), !encrypted.data.isEmpty else {
            throw KMIPError(.malformed, server: nil, message: "the Encrypt answer has no data")
        }
        guard let usedIV = encrypted.iv ?? iv, !usedIV.isEmpty, usedIV.count <= 255 else {
            throw KMIPError(.malformed, server: nil, message: "the Encrypt answer has no IV (and none was sent)")
        }
        var tag: [UInt8] = []
        if mode == .gcm {
            guard let returned = encrypted.tag, (12...16).contains(returned.count) else {
                throw KMIPError(.operation(.encrypt, .featureNotSupported), server: nil, message: "the AES-GCM answer carries no authentication tag")
            }
            tag = returned
        }
        guard encrypted.data.count <= 0xFFFF else { throw KMIPError(.malformed, server: nil, message: "the ciphertext is too long") }
        return KMIPKeyBlob(mode: mode, keyLength: key.count, version: version, masterKeyID: uid, iv: usedIV, tag: tag,
                           ciphertext: encrypted.data, check: KMIPKeyBlob.check(for: key, ref: ref, mode: mode))
    }

    func decrypt(_ blob: KMIPKeyBlob, ref: KeyRef, path: String) async throws(KMIPError) -> SecureBytes {
        let item = Payloads.decrypt(blob.masterKeyID, parameters: blob.mode.parameters, data: blob.ciphertext, iv: blob.iv,
                                    additionalData: blob.mode == .gcm ? KMIPKeyBlob.binding(ref) : nil,
                                    tag: blob.mode == .gcm ? blob.tag : nil)
        let answer = try await batcher.submit(item)
        defer { answer.payload.forEachByteString { KMIPSecrets.zero($0) } }
        guard answer.status == .success else {
            throw KMIPError(.operation(.decrypt, answer.reason ?? .generalFailure), server: client.transport.currentServer, message: answer.failureText)
        }
        guard let data = answer.payload[.data], case let .byteString(bytes) = data.value else {
            throw KMIPError(.malformed, server: nil, message: "the Decrypt answer has no data")
        }
        guard bytes.count == blob.keyLength else {
            throw KMIPError(.operation(.decrypt, .cryptographicFailure), server: nil,
                            message: "it decrypts to \(bytes.count) bytes, not \(blob.keyLength)")
        }
        let key = SecureBytes(copying: bytes)
        guard KMIPKeyBlob.check(for: key, ref: ref, mode: blob.mode) == blob.check else {
            throw KMIPError(.operation(.decrypt, .cryptographicFailure), server: nil,
                            message: "the unwrapped key fails its check value (the file was changed, or moved from another key id or version)")
        }
        return key
    }

    /// Turns a failure into the line a DBA acts on: for a refused Encrypt or Decrypt, asks the
    /// server what state the master key is in (not active, revoked, destroyed) before blaming
    /// permissions.
    func explain(_ error: KMIPError, ref: KeyRef?, masterKey: String) async -> ProviderError {
        guard case let .operation(operation, reason) = error.kind else { return error.providerError(key: masterKey) }
        let uid = resolvedMasterKey ?? masterKey
        switch reason {
        case .itemNotFound:
            if operation == .locate || operation == .getAttributes || masterKey.hasPrefix("name:") { forgetMasterKey() }
            return ProviderError(.refused, "KMIP master key \(masterKey) not found: \(error.message) (some key managers delete destroyed keys, which then look the same)",
                                 serviceCode: reason.description, serviceKey: masterKey)
        case .permissionDenied, .illegalOperation:
            guard operation == .encrypt || operation == .decrypt else {
                return ProviderError(.refused, "operation not permitted: \(error.description)", serviceCode: reason.description, serviceKey: masterKey)
            }
            let blobKey = operation == .decrypt ? masterKey : uid
            do throws(KMIPError) {
                let check = try await inspect(blobKey)
                if let state = check.state, let problem = MasterKeyCheck.stateProblem(state) {
                    return ProviderError(.refused, "KMIP master key \(blobKey): \(problem)", serviceCode: reason.description, serviceKey: blobKey)
                }
                if let usage = check.problems.first {
                    return ProviderError(.refused, "KMIP master key \(blobKey): \(usage)", serviceCode: reason.description, serviceKey: blobKey)
                }
            } catch {
                if case .operation(_, .itemNotFound) = error.kind {
                    return ProviderError(.refused, "KMIP master key \(blobKey) not found (destroyed, or never created)",
                                         serviceCode: ResultReason.itemNotFound.description, serviceKey: blobKey)
                }
            }
            return ProviderError(.refused, "operation not permitted: the KMIP server refuses \(operation.name) with master key \(blobKey) for this client certificate (\(error.message)); grant it Encrypt and Decrypt on the key",
                                 serviceCode: reason.description, serviceKey: blobKey)
        default:
            return error.providerError(key: masterKey)
        }
    }
}
