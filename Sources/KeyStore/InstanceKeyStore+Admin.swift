import BrokerProtocol
import SecureMemory
import SystemSupport

/// The admin operations of an instance (protocol op ADMIN): rewrap and two-factor unlock. They
/// use what only some providers can do, so they ask the provider for that capability.
extension InstanceKeyStore {
    public struct RewrapReport: Sendable {
        public var rewrapped: [KeyRef] = []
        public var failed: [(ref: KeyRef, message: String)] = []
    }

    /// Re-encrypts every stored version under `masterKey` (KMS ReEncrypt), at most `concurrency` at
    /// a time. Each new blob is decrypted and compared with the key it must hold before it replaces
    /// the old file, atomically; a version that fails keeps its old file.
    public func rewrap(to masterKey: String, concurrency: Int) async -> RewrapReport {
        let refs = state.withLock { state in
            KeyRef.all(in: state.index)
        }
        let failures = await mapWithBoundedConcurrency(refs, limit: concurrency) { ref in await self.rewrapOne(ref, to: masterKey) }
        var report = RewrapReport()
        for (ref, failure) in zip(refs, failures) {
            if let failure { report.failed.append((ref, failure)) } else { report.rewrapped.append(ref) }
        }
        logger.notice("rewrapped \(report.rewrapped.count) of \(refs.count) stored key versions under \(masterKey)\(report.failed.isEmpty ? "" : ", \(report.failed.count) failed")")
        return report
    }

    /// nil when done, else why not.
    private func rewrapOne(_ ref: KeyRef, to masterKey: String) async -> String? {
        let path = files.location(of: ref)
        do throws(KeyStoreError) {
            guard let rewrapper = provider as? any RewrappingProvider else {
                throw KeyStoreError(.internal, "provider \"\(provider.name)\" cannot re-wrap keys under another master key")
            }
            let current = try await key(ref)
            let old: [UInt8]
            do { old = try await files.read(ref) } catch { throw KeyStoreError(error) }
            let new: [UInt8]
            new = try await rewrapper.rewrapDataKey(old, to: masterKey, for: ref, path: path)
            let check: SecureBytes
            do {
                check = try await provider.unwrapDataKey(new, for: ref, path: path)
            } catch {
                throw KeyStoreError(error.code, "the re-encrypted blob does not decrypt: \(error.message)")
            }
            guard check.isEqual(to: current) else {
                throw KeyStoreError(.corrupt, "the re-encrypted blob decrypts to a different key; the old file is kept")
            }
            do { try await files.replace(ref, bytes: new) } catch { throw KeyStoreError(error) }
            logger.info("rewrapped key \(ref.keyID) version \(ref.version) under \(masterKey)",
                        metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
            return nil
        } catch {
            logger.error("cannot rewrap \(ref): \(error.message)", metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
            return error.message
        }
    }

    /// Two-factor start: unlocks the instance with a one-time code. Returns a sentence for the admin.
    public func unlock(tokenCode: String) async throws(KeyStoreError) -> String {
        guard let unlockable = provider as? any UnlockableProvider else {
            throw KeyStoreError(.internal, "provider \"\(provider.name)\" has no two-factor start; there is nothing to unlock")
        }
        return try await unlockable.unlock(tokenCode: tokenCode)
    }
}
