import BrokerProtocol
import Logging
import SecureMemory
import Synchronization
import SystemSupport

/// The data keys of one instance: the index of versions on disk, the unwrapped keys in locked
/// memory, and the loads and writes in flight.
///
/// Lookups of cached keys (`withCachedLatest`, `withCachedKey`) take one short lock and never wait on
/// I/O, so the server answers them inline. Everything else is async: a load of one key never waits
/// on a load of another, concurrent requests for the same key share one load (single-flight), and
/// writes of new versions of one key id are serialised so version numbers never collide.
/// Failures are not remembered: the next request tries again.
public final class InstanceKeyStore: Sendable {
    public let name: String
    public let provider: any KeyProvider
    public let files: any KeyFileStore
    public let keyLength: Int
    public let autoCreate: Bool
    let logger: Logger

    let state = Mutex(State())

    public init(name: String, provider: any KeyProvider, files: any KeyFileStore, keyLength: Int, autoCreate: Bool, logger: Logger) {
        self.name = name
        self.provider = provider
        self.files = files
        self.keyLength = keyLength
        self.autoCreate = autoCreate
        var logger = logger
        logger[metadataKey: "instance"] = "\(name)"
        self.logger = logger
    }

    /// An instance whose keys live in a local directory, named as the provider names its files.
    public convenience init(name: String, provider: any KeyProvider, directory: String, keyLength: Int, autoCreate: Bool, logger: Logger) {
        self.init(name: name, provider: provider, files: KeyFileDirectory(path: directory, prefix: provider.fileNamePrefix),
                  keyLength: keyLength, autoCreate: autoCreate, logger: logger)
    }

    /// Creates the store if needed (with its key-set identity) and rebuilds the index from the
    /// files in it.
    public func open() async throws(StorageError) {
        try await files.prepare()
        let keySet = try await files.keySetIdentity()
        let index = try await files.scan(removingLeftovers: true)
        state.withLock {
            $0.replaceIndex(index)
            $0.keySet = keySet
        }
    }

    /// The identity of the key set (nil before `open`).
    public var keySet: KeySetIdentity? { state.withLock { $0.keySet } }

    /// Adds the versions the store has and the index lacks (other brokers' new versions in a
    /// shared store); returns how many were added. Versions are only ever added.
    @discardableResult
    public func refreshFromStore() async throws(StorageError) -> Int {
        let found = try await files.scan(removingLeftovers: false)
        return merge(found)
    }

    /// Adds versions to the index; returns how many were new.
    @discardableResult
    func merge(_ found: [UInt32: [UInt32]]) -> Int {
        state.withLock { state in
            var added = 0
            for (keyID, versions) in found {
                var known = state.index[keyID] ?? []
                let new = versions.filter { !known.contains($0) }
                guard !new.isEmpty else { continue }
                known += new
                known.sort()
                state.setVersions(known, of: keyID)
                added += new.count
            }
            return added
        }
    }

    // MARK: Cached path

    /// Runs `body` with the newest version of `keyID` and its bytes in locked memory, under the
    /// store's lock (so the bytes stay valid and no reference is counted), and returns true; or
    /// returns false when that version is not unwrapped yet. `body` must only copy the bytes out.
    /// Not generic: called from another module, a generic one looked up its result type's metadata
    /// at run time on every request (3 % of the daemon's user time with one request in flight).
    public func withCachedLatest(keyID: UInt32, _ body: (UInt32, UnsafeRawBufferPointer) -> Void) -> Bool {
        state.withLock { state in
            guard let newest = state.newest[keyID] else { return false }
            body(newest.version, newest.bytes)
            return true
        }
    }

    /// The same for one version of a key.
    public func withCachedKey(_ ref: KeyRef, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        state.withLock { state in
            guard let key = state.keys[ref] else { return false }
            body(key.unsafeBytes)
            return true
        }
    }

    // MARK: Requests

    /// The newest version of `keyID`, creating version 1 when the key is new and the instance allows it.
    public func latest(keyID: UInt32) async throws(KeyStoreError) -> (version: UInt32, key: SecureBytes) {
        guard keyID != 0 else { throw KeyStoreError(.notFound, "key id 0 is never valid") }
        while true {
            enum Next { case version(UInt32), wait(Task<UInt32, any Error>) }
            let next: Next? = state.withLock { state in
                if let version = state.index[keyID]?.last { return .version(version) }
                if let write = state.writes[keyID] { return .wait(write.task) }
                return nil
            }
            switch next {
            case let .version(version):
                return (version, try await key(KeyRef(keyID: keyID, version: version)))
            case let .wait(write):
                _ = try await Self.value(of: write)
                continue
            case nil:
                // A version put there by `keybrokerctl import`, or by another broker sharing the
                // store, is adopted, not overwritten.
                if try await adoptFromStore(keyID: keyID) { continue }
                guard autoCreate else {
                    throw KeyStoreError(.notFound, "key \(keyID) does not exist in instance \"\(name)\" and auto_create is off")
                }
                let write = startWrite(keyID: keyID, onlyIfNew: true)
                let version = try await Self.value(of: write)
                return (version, try await key(KeyRef(keyID: keyID, version: version)))
            }
        }
    }

    /// One version of a key, unwrapped from its file on first use.
    public func key(_ ref: KeyRef) async throws(KeyStoreError) -> SecureBytes {
        guard ref.keyID != 0, ref.version != 0 else { throw KeyStoreError(.notFound, "key id 0 and version 0 are never valid") }
        enum Next { case ready(SecureBytes), wait(Task<SecureBytes, any Error>) }
        let next: Next = state.withLock { state in
            if let key = state.keys[ref] { return .ready(key) }
            if let load = state.loads[ref] { return .wait(load) }
            let load = Task { try await self.load(ref) }
            state.loads[ref] = load
            return .wait(load)
        }
        switch next {
        case let .ready(key): return key
        case let .wait(load): return try await Self.value(of: load)
        }
    }

    /// Writes version N+1 of `keyID` (or of every key when nil); returns the new versions.
    public func rotate(keyID: UInt32?) async throws(KeyStoreError) -> [KeyRef] {
        let outcome = try await rotateEach(keyID: keyID)
        if let first = outcome.failed.first { throw first.error }
        return outcome.rotated
    }

    /// What a rotation did for each key: the new versions, and the keys that could not be rotated.
    public struct RotationOutcome: Sendable {
        public var rotated: [KeyRef] = []
        public var failed: [(keyID: UInt32, error: KeyStoreError)] = []
    }

    /// Rotates one key, or every key (`nil`); a key that fails does not undo the others.
    public func rotateEach(keyID: UInt32?) async throws(KeyStoreError) -> RotationOutcome {
        let ids: [UInt32]
        if let keyID {
            guard keyID != 0 else { throw KeyStoreError(.notFound, "key id 0 is never valid") }
            let exists = state.withLock { $0.index[keyID] != nil || $0.writes[keyID] != nil }
            guard exists || autoCreate else {
                throw KeyStoreError(.notFound, "key \(keyID) does not exist in instance \"\(name)\" and auto_create is off")
            }
            ids = [keyID]
        } else {
            ids = state.withLock { Array($0.index.keys).sorted() }
        }
        let writes = ids.map { ($0, startWrite(keyID: $0, onlyIfNew: false)) }
        var outcome = RotationOutcome()
        for (id, write) in writes {
            do throws(KeyStoreError) {
                let version = try await Self.value(of: write)
                outcome.rotated.append(KeyRef(keyID: id, version: version))
                logger.info("rotated key \(id) to version \(version)", metadata: ["key_id": "\(id)", "version": "\(version)", "event": "key_rotated"])
            } catch {
                outcome.failed.append((id, error))
            }
        }
        return outcome
    }

    // MARK: Status

    public struct Summary: Sendable {
        public var keyIDs: Int
        public var versions: Int
        public var loaded: Int
        public var pending: Int
        public var failedLoads: Int
        public var lastError: String?
        public var newest: [(keyID: UInt32, version: UInt32)]
    }

    public func summary() -> Summary {
        state.withLock { state in
            Summary(keyIDs: state.index.count, versions: state.index.values.reduce(0) { $0 + $1.count },
                    loaded: state.keys.count, pending: state.loads.count + state.writes.count,
                    failedLoads: state.failedLoads, lastError: state.lastError,
                    newest: state.index.compactMap { id, versions in versions.last.map { (id, $0) } }.sorted { $0.keyID < $1.keyID })
        }
    }

    /// Unwraps every stored version, at most `concurrency` at a time. Returns the number that failed.
    @discardableResult
    public func warmUp(concurrency: Int) async -> Int {
        let refs = state.withLock { state in
            KeyRef.all(in: state.index).filter { state.keys[$0] == nil }
        }
        guard !refs.isEmpty else { return 0 }
        // Shutdown cancels the warm-up: loads started finish, no new ones start.
        let failed = await mapWithBoundedConcurrency(refs, limit: concurrency) { ref in
            if Task.isCancelled { return true }
            return (try? await self.key(ref)) == nil
        }
        let failures = failed.filter { $0 }.count
        logger.info("loaded \(refs.count - failures) of \(refs.count) stored key versions\(failures > 0 ? ", \(failures) failed" : "")")
        return failures
    }

    /// Drops every unwrapped key; the memory is zeroed as the last references go.
    public func releaseKeys() {
        state.withLock { $0.removeAllKeys() }
    }

    // MARK: Internals

    private static func value<T>(of task: Task<T, any Error>) async throws(KeyStoreError) -> T {
        do {
            return try await task.value
        } catch let error as KeyStoreError {
            throw error
        } catch {
            throw KeyStoreError(.internal, "\(error)")
        }
    }

    private func load(_ ref: KeyRef) async throws -> SecureBytes {
        do throws(KeyStoreError) {
            let key = try await unwrapStored(ref)
            state.withLock { state in
                state.insertKey(key, for: ref)
                state.loads[ref] = nil
            }
            logger.info("loaded key \(ref.keyID) version \(ref.version) (\(key.count * 8) bits)",
                        metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)", "event": "key_loaded"])
            return key
        } catch {
            state.withLock { state in
                state.loads[ref] = nil
                if error.code != .notFound {
                    state.failedLoads += 1
                    state.lastError = error.message
                }
            }
            if error.code != .notFound {
                logger.error("cannot load key \(ref.keyID) version \(ref.version): \(error.message)",
                             metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)", "event": "key_failed"])
            }
            throw error
        }
    }

    private func unwrapStored(_ ref: KeyRef) async throws(KeyStoreError) -> SecureBytes {
        let known = state.withLock { $0.index[ref.keyID]?.contains(ref.version) ?? false }
        var present = known
        if !present { present = try await adopt(ref) }
        guard present else {
            throw KeyStoreError(.notFound, "\(ref) does not exist in instance \"\(name)\"")
        }
        let wrapped: [UInt8]
        do {
            wrapped = try await files.read(ref)
        } catch {
            throw KeyStoreError(error)
        }
        return try await provider.unwrapDataKey(wrapped, for: ref, path: files.location(of: ref))
    }

    /// Adds a version found in the store but not in the index (written by `keybrokerctl import`,
    /// or by another broker: a GET_KEY for a version not known here looks in the store at once).
    func adopt(_ ref: KeyRef) async throws(KeyStoreError) -> Bool {
        do {
            guard try await files.exists(ref) else { return false }
        } catch {
            throw KeyStoreError(error)
        }
        state.withLock { $0.addVersion(ref) }
        logger.info("adopted \(ref) found in \(files.location)", metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
        return true
    }

    /// Asks the store for versions of `keyID` the index lacks; true when it found some. A store
    /// that cannot answer makes this UNAVAILABLE: a key another broker may have created is not
    /// created again here.
    func adoptFromStore(keyID: UInt32) async throws(KeyStoreError) -> Bool {
        let found: [UInt32]
        do {
            // The directory answers with one stat when version 1 is absent (every key's history
            // starts at 1), so creating n keys does not cost n² directory scans.
            found = try await files.versions(of: keyID)
        } catch {
            throw KeyStoreError(error)
        }
        guard !found.isEmpty else { return false }
        let added = merge([keyID: found])
        if added > 0 {
            logger.info("adopted \(added) version(s) of key \(keyID) found in \(files.location)", metadata: ["key_id": "\(keyID)"])
        }
        return state.withLock { $0.index[keyID]?.isEmpty == false }
    }
}

/// What `rotate` returns: the new version of each key id.
public typealias RotatedVersion = KeyRef
