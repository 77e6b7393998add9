import AWSCore
import BrokerProtocol
import Glibc
import KeyStore
import Logging
import Synchronization
import SystemSupport

/// One instance's wrapped keys in a bucket many brokers share, `PREFIX/INSTANCE/<key file name>`
/// with the key file's exact bytes, and `state_dir/INSTANCE` as its write-through cache.
///
/// The bucket is the source of truth: a new version exists once S3 acknowledged its atomic create
/// (`If-None-Match: *`), and only then is it written to the cache and told to a client; a create
/// that loses to another broker's gets `alreadyExists`, and the winner's object is adopted. Reads
/// are served from the cache; what the cache lacks is fetched from S3 and cached, so a broker that
/// has synced once serves every key while S3 is down. Nothing is ever deleted or overwritten.
public final class S3KeyStore: SharedKeyFileStore {
    public let client: S3Client
    public let cache: KeyFileDirectory
    /// `PREFIX/INSTANCE/`: every object of the instance starts with it.
    public let objectPrefix: String
    public let refreshMilliseconds: Int
    private let logger: Logger
    private let state = Mutex(SharedStoreSync())
    /// When each version was created, as S3 records it (LastModified), so that brokers sharing
    /// the store agree on a key's age for scheduled rotation.
    private let created = Mutex<[KeyRef: Int64]>([:])

    public init(client: S3Client, prefix: String, instance: String, cache: KeyFileDirectory, refreshMilliseconds: Int, logger: Logger) {
        self.client = client
        self.cache = cache
        self.objectPrefix = (prefix.isEmpty ? "" : prefix + "/") + instance + "/"
        self.refreshMilliseconds = refreshMilliseconds
        self.logger = logger
    }

    public var location: String { "s3://\(client.bucket)/\(objectPrefix)" }

    public func objectKey(_ ref: KeyRef) -> String { "\(objectPrefix)\(cache.prefix).\(ref.keyID).\(ref.version)" }

    public func location(of ref: KeyRef) -> String { "s3://\(client.bucket)/\(objectKey(ref))" }

    public var sync: SharedStoreSync { state.withLock { $0 } }

    private func failure(_ error: AWSError, _ what: String) -> StorageError {
        let text = "S3 store \(location): cannot \(what): \(error.description); cached keys are still served, new keys and rotations need the store"
        state.withLock { $0.lastError = text }
        let code: Int32 = switch error.kind {
        case .service: error.isRetryable ? EIO : EPERM
        default: EIO
        }
        return StorageError(location: location, message: text, errno: code)
    }

    /// Only the cache directory: S3 may be down at start-up, and the cache is then what is served.
    public func prepare() throws(StorageError) {
        try cache.prepare()
    }

    /// The cache's versions and the store's. Objects the cache lacks are fetched when first read
    /// (the warm-up after start-up and after each refresh reads them all), so start-up waits for
    /// one listing, not for every object. With S3 unreachable, the cache alone.
    public func scan(removingLeftovers: Bool) async throws(StorageError) -> [UInt32: [UInt32]] {
        let local = try cache.scan(removingLeftovers: removingLeftovers)
        let shared: [KeyRef]
        do {
            shared = try await listShared()
        } catch {
            let count = local.values.reduce(0) { $0 + $1.count }
            logger.warning("\(error.description); serving the \(count) versions in the cache \(cache.path)")
            return local
        }
        let sharedSet = Set(shared)
        let localOnly = KeyRef.all(in: local).filter { !sharedSet.contains($0) }
        if !localOnly.isEmpty && removingLeftovers {
            logger.warning("\(localOnly.count) versions in \(cache.path) are not in \(location) (a key set from before the store was set?): other brokers cannot serve them; upload them with: keybrokerctl store push")
        }
        var all = local
        for ref in shared where !(all[ref.keyID]?.contains(ref.version) ?? false) {
            all[ref.keyID, default: []].append(ref.version)
        }
        return all.mapValues { $0.sorted() }
    }

    /// The store's versions of one key id (one listing), with any the cache has.
    public func versions(of keyID: UInt32) async throws(StorageError) -> [UInt32] {
        let local = try cache.versions(of: keyID)
        let keys: [(key: String, lastModified: Int64?)]
        do {
            keys = try await client.listObjects(prefix: "\(objectPrefix)\(cache.prefix).\(keyID).")
        } catch {
            throw failure(error, "list the versions of key \(keyID)")
        }
        let shared = remember(listing: keys).filter { $0.keyID == keyID }.map(\.version)
        return Array(Set(local + shared)).sorted()
    }

    /// The versions a listing names, their creation times noted.
    private func remember(listing: [(key: String, lastModified: Int64?)]) -> [KeyRef] {
        var refs: [KeyRef] = []
        created.withLock { created in
            for (key, time) in listing {
                guard let ref = parse(key) else { continue }
                refs.append(ref)
                if let time { created[ref] = time }
            }
        }
        return refs
    }

    public func creationTimeMilliseconds(of ref: KeyRef) -> Int64? {
        created.withLock { $0[ref] }
    }

    /// The version named by an object key of this instance, nil for anything else.
    func parse(_ key: String) -> KeyRef? {
        guard key.hasPrefix(objectPrefix) else { return nil }
        let name = String(key.dropFirst(objectPrefix.count))
        guard !name.contains("/") else { return nil }
        return cache.parse(name)
    }

    public func read(_ ref: KeyRef) async throws(StorageError) -> [UInt8] {
        if cache.exists(ref) { return try cache.read(ref) }
        guard let bytes = try await fetch(ref) else {
            throw StorageError(location: location(of: ref), message: "\(location(of: ref)) does not exist", errno: ENOENT)
        }
        return bytes
    }

    public func exists(_ ref: KeyRef) async throws(StorageError) -> Bool {
        if cache.exists(ref) { return true }
        return try await fetch(ref) != nil
    }

    /// Reads one object from S3 into the cache; nil when S3 has no such object.
    private func fetch(_ ref: KeyRef) async throws(StorageError) -> [UInt8]? {
        let bytes: [UInt8]?
        do {
            bytes = try await client.getObject(objectKey(ref))
        } catch {
            throw failure(error, "read \(ref)")
        }
        guard let bytes else { return nil }
        guard !bytes.isEmpty else {
            throw StorageError(location: location(of: ref), message: "\(location(of: ref)) is empty; it is not a key file and is not served", errno: EIO)
        }
        remember(ref, bytes: bytes)
        return bytes
    }

    /// Writes a version S3 has into the cache. A cache that cannot be written costs a fetch
    /// later, not the request.
    private func remember(_ ref: KeyRef, bytes: [UInt8]) {
        do {
            try cache.writeNew(ref, bytes: bytes)
        } catch {
            if error.alreadyExists, let cached = try? cache.read(ref), cached != bytes {
                logger.error("\(cache.filePath(ref)) differs from \(location(of: ref)); the cached file is served here, other brokers serve the object: compare them with keybrokerctl store verify")
            } else if !error.alreadyExists {
                logger.warning("cannot cache \(location(of: ref)) in \(cache.path): \(error.description)")
            }
        }
    }

    /// Creates the object (atomically, only if absent), then the cache file. Only when S3 has
    /// acknowledged the create does this return, so a version told to a client is in the store.
    public func writeNew(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError) {
        try await publish(ref, bytes: bytes)
        let now = unixNowMilliseconds()
        created.withLock { $0[ref] = now }
        remember(ref, bytes: bytes)
    }

    public func publish(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError) {
        let created: Bool
        do {
            created = try await client.putObjectIfAbsent(objectKey(ref), bytes: bytes)
        } catch {
            throw failure(error, "create \(ref) (nothing was written)")
        }
        guard created else {
            throw StorageError(location: location(of: ref), message: "\(location(of: ref)) already exists", errno: EEXIST)
        }
    }

    /// A shared store never overwrites an object: other brokers may have served its bytes.
    public func replace(_ ref: KeyRef, bytes: [UInt8]) throws(StorageError) {
        throw StorageError(location: location(of: ref), message: "\(location(of: ref)) is in a shared S3 store, whose objects are never overwritten; rewrap is not available for an instance with store = s3://… (move the key set into another instance with rewrap-into instead)", errno: EPERM)
    }

    /// The object that names the key set, beside its keys.
    var keySetObject: String { objectPrefix + KeyFileDirectory.keySetFileName }

    /// The store's `key-set` object, cached in `state_dir/<instance>/key-set`. A new store takes
    /// the identity of a key set that lived in the cache before the store was set (so datadirs
    /// that recorded it keep working after `store push`), else a new one; two brokers creating it
    /// at once race on the atomic create and both keep the winner's. With S3 unreachable the
    /// cached identity is used; without one the instance cannot start (it would invent a key set).
    public func keySetIdentity() async throws(StorageError) -> KeySetIdentity {
        let local = try cache.existingKeySetIdentity()
        let remote: [UInt8]?
        do {
            remote = try await client.getObject(keySetObject)
        } catch {
            if let local {
                logger.warning("S3 store \(location): cannot read the key set's identity (\(error.description)); using the cached one, \(local)")
                return local
            }
            throw failure(error, "read the key set's identity (\(cache.keySetPath) has none yet)")
        }
        if let remote { return try adoptStored(remote, local: local) }
        let identity = local ?? KeySetIdentity.generate()
        let created: Bool
        do {
            created = try await client.putObjectIfAbsent(keySetObject, bytes: identity.fileContent)
        } catch {
            throw failure(error, "create the key set's identity")
        }
        guard created else {
            let winner: [UInt8]?
            do { winner = try await client.getObject(keySetObject) } catch { throw failure(error, "read the key set's identity") }
            guard let winner else {
                throw StorageError(location: "s3://\(client.bucket)/\(keySetObject)", message: "s3://\(client.bucket)/\(keySetObject) was refused as existing but cannot be read", errno: EIO)
            }
            return try adoptStored(winner, local: local)
        }
        logger.notice("S3 store \(location): key set \(identity)\(local == nil ? " created" : " taken from \(cache.keySetPath)")")
        if local == nil { _ = try? cache.adoptKeySetIdentity(identity) }
        return identity
    }

    private func adoptStored(_ bytes: [UInt8], local: KeySetIdentity?) throws(StorageError) -> KeySetIdentity {
        let object = "s3://\(client.bucket)/\(keySetObject)"
        guard let identity = KeySetIdentity(fileContent: bytes) else {
            throw StorageError(location: object, message: "\(object) does not hold a key-set identity; it is never replaced by a new one (that would tell every datadir its keys are gone): restore it from the bucket's object versions", errno: EIO)
        }
        if let local, local != identity {
            logger.error("\(cache.keySetPath) names key set \(local) but \(object) names \(identity): the store's is served; the cache holds keys of another key set (compare with keybrokerctl store verify)")
        } else if local == nil {
            _ = try? cache.adoptKeySetIdentity(identity)
        }
        return identity
    }

    public func listShared() async throws(StorageError) -> [KeyRef] {
        let keys: [(key: String, lastModified: Int64?)]
        do {
            keys = try await client.listObjects(prefix: objectPrefix)
        } catch {
            throw failure(error, "list the objects")
        }
        let refs = remember(listing: keys)
        state.withLock { $0 = SharedStoreSync(lastListing: unixNow(), objects: refs.count, lastError: nil) }
        return refs
    }

    public func readShared(_ ref: KeyRef) async throws(StorageError) -> [UInt8] {
        let bytes: [UInt8]?
        do {
            bytes = try await client.getObject(objectKey(ref))
        } catch {
            throw failure(error, "read \(ref)")
        }
        guard let bytes else {
            throw StorageError(location: location(of: ref), message: "\(location(of: ref)) does not exist", errno: ENOENT)
        }
        return bytes
    }
}
