import BrokerProtocol
import SecureMemory
import SystemSupport

/// `keybrokerctl store status|push|verify`: what an instance's shared store holds against its
/// local cache, uploading a key set that exists only locally, and checking every object.
extension InstanceKeyStore {
    public struct SharedStoreReport: Sendable {
        public var location: String
        public var objects = 0
        public var keyIDs = 0
        /// Versions in the cache (or served) that the store lacks: other brokers cannot serve them.
        public var localOnly: [KeyRef] = []
        /// Objects not yet fetched into the cache.
        public var notCached = 0
        public var sync = SharedStoreSync()
        public var refreshMilliseconds = 0
    }

    public struct PushReport: Sendable {
        public var uploaded: [KeyRef] = []
        /// In the store already with the same bytes.
        public var present: [KeyRef] = []
        public var failed: [(ref: KeyRef, message: String)] = []
    }

    public struct VerifyReport: Sendable {
        public var checked = 0
        /// Objects that unwrapped to the key this broker serves and match the cache byte for byte.
        public var verified = 0
        public var localOnly: [KeyRef] = []
        public var failed: [(ref: KeyRef, message: String)] = []
    }

    private func sharedStore() throws(KeyStoreError) -> any SharedKeyFileStore {
        guard let shared = files as? any SharedKeyFileStore else {
            throw KeyStoreError(.notFound, "instance \"\(name)\" keeps its keys in \(files.location) only; set store = \"s3://BUCKET/PREFIX\" in [instances.\(name)] for a shared store")
        }
        return shared
    }

    /// The store's objects (a fresh listing) and the cache's versions.
    private func contents(of shared: any SharedKeyFileStore) async throws(KeyStoreError) -> (objects: [KeyRef], local: [KeyRef]) {
        do {
            let objects = try await shared.listShared()
            return (objects, KeyRef.all(in: try shared.cache.scan(removingLeftovers: false)))
        } catch {
            throw KeyStoreError(error)
        }
    }

    public func sharedStoreReport() async throws(KeyStoreError) -> SharedStoreReport {
        let shared = try sharedStore()
        let (objects, local) = try await contents(of: shared)
        let inStore = Set(objects)
        let cached = Set(local)
        var report = SharedStoreReport(location: shared.location)
        report.objects = objects.count
        report.keyIDs = Set(objects.map(\.keyID)).count
        report.localOnly = local.filter { !inStore.contains($0) }
        report.notCached = objects.filter { !cached.contains($0) }.count
        report.sync = shared.sync
        report.refreshMilliseconds = shared.refreshMilliseconds
        return report
    }

    /// Uploads every cached version the store lacks (create-if-absent: nothing is overwritten);
    /// one already there is compared byte for byte. Running it again changes nothing.
    public func pushToSharedStore(concurrency: Int) async throws(KeyStoreError) -> PushReport {
        let shared = try sharedStore()
        let (objects, local) = try await contents(of: shared)
        let inStore = Set(objects)
        var report = PushReport()
        let outcomes = await mapWithBoundedConcurrency(local, limit: concurrency) { ref -> String? in
            await self.pushOne(ref, to: shared, listed: inStore.contains(ref))
        }
        for (ref, outcome) in zip(local, outcomes) {
            switch outcome {
            case nil: report.uploaded.append(ref)
            case "present": report.present.append(ref)
            case let message?: report.failed.append((ref, message))
            }
        }
        logger.notice("store push: uploaded \(report.uploaded.count) of \(local.count) cached versions to \(shared.location), \(report.present.count) were there\(report.failed.isEmpty ? "" : ", \(report.failed.count) failed")")
        return report
    }

    /// nil when uploaded, "present" when the store has the same bytes, else why not.
    private func pushOne(_ ref: KeyRef, to shared: any SharedKeyFileStore, listed: Bool) async -> String? {
        do throws(StorageError) {
            let bytes = try shared.cache.read(ref)
            if !listed {
                do {
                    try await shared.publish(ref, bytes: bytes)
                    return nil
                } catch {
                    guard error.alreadyExists else { throw error }
                }
            }
            // In the store already: the same bytes, or a conflict that is reported, never resolved here.
            if try await shared.readShared(ref) == bytes { return "present" }
            return "\(shared.location(of: ref)) exists with other bytes than \(shared.cache.filePath(ref)); neither is changed: the two hosts created different keys for the same version, find out which one the data was encrypted with before serving both"
        } catch {
            return error.description
        }
    }

    /// Every object is read from the store, unwrapped by the provider and compared with the key
    /// this broker serves for it, and with the cached file byte for byte.
    public func verifySharedStore(concurrency: Int) async throws(KeyStoreError) -> VerifyReport {
        let shared = try sharedStore()
        let (objects, local) = try await contents(of: shared)
        let inStore = Set(objects)
        let failures = await mapWithBoundedConcurrency(objects, limit: concurrency) { ref in await self.verifyOne(ref, in: shared) }
        var report = VerifyReport()
        report.checked = objects.count
        report.localOnly = local.filter { !inStore.contains($0) }
        for (ref, failure) in zip(objects, failures) {
            if let failure { report.failed.append((ref, failure)) } else { report.verified += 1 }
        }
        logger.notice("store verify: \(report.verified) of \(objects.count) objects in \(shared.location) verified\(report.failed.isEmpty ? "" : ", \(report.failed.count) failed"), \(report.localOnly.count) cached versions not in the store")
        return report
    }

    private func verifyOne(_ ref: KeyRef, in shared: any SharedKeyFileStore) async -> String? {
        do throws(KeyStoreError) {
            let bytes: [UInt8]
            do { bytes = try await shared.readShared(ref) } catch { throw KeyStoreError(error) }
            if shared.cache.exists(ref) {
                let cached: [UInt8]
                do { cached = try shared.cache.read(ref) } catch { throw KeyStoreError(error) }
                guard cached == bytes else {
                    throw KeyStoreError(.corrupt, "\(shared.cache.filePath(ref)) differs from \(shared.location(of: ref))")
                }
            }
            let unwrapped = try await provider.unwrapDataKey(bytes, for: ref, path: shared.location(of: ref))
            let served = try await key(ref)
            guard unwrapped.isEqual(to: served) else {
                throw KeyStoreError(.corrupt, "\(shared.location(of: ref)) unwraps to another key than the one served for \(ref)")
            }
            return nil
        } catch {
            return error.message
        }
    }
}
