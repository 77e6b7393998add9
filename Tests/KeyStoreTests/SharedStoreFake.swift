import BrokerProtocol
import Glibc
import KeyStore
import Synchronization

/// A shared store in memory, for the key store's logic: a "bucket" several stores share, each
/// with its own cache directory, with an outage switch and a hook that lets a competitor write
/// just before a create. It implements what the S3 store promises (create only if absent, the
/// cache written after the store, the store as the source of truth); the S3 store itself is
/// tested against moto (IntegrationTests/store).
final class FakeBucket: Sendable {
    struct State {
        var objects: [KeyRef: [UInt8]] = [:]
        var down = false
        var beforeCreate: (@Sendable (KeyRef) -> Void)?
    }
    let state = Mutex(State())

    var down: Bool {
        get { state.withLock { $0.down } }
        set { state.withLock { $0.down = newValue } }
    }

    func put(_ ref: KeyRef, _ bytes: [UInt8]) -> Bool {
        state.withLock { state in
            if state.objects[ref] != nil { return false }
            state.objects[ref] = bytes
            return true
        }
    }

    var objects: [KeyRef: [UInt8]] { state.withLock { $0.objects } }
}

struct FakeSharedStore: SharedKeyFileStore {
    let bucket: FakeBucket
    let cache: KeyFileDirectory
    var location: String { "fake://bucket" }
    var refreshMilliseconds: Int { 1000 }
    var sync: SharedStoreSync { SharedStoreSync(lastListing: 1, objects: bucket.objects.count) }

    func location(of ref: KeyRef) -> String { "fake://bucket/\(ref.keyID).\(ref.version)" }

    private func up() throws(StorageError) {
        if bucket.down { throw StorageError(location: location, message: "fake store is down", errno: EIO) }
    }

    func prepare() throws(StorageError) { try cache.prepare() }

    /// The fake keeps its identity in the cache directory; the S3 store's is an object (tested against moto).
    func keySetIdentity() throws(StorageError) -> KeySetIdentity { try cache.keySetIdentity() }

    func scan(removingLeftovers: Bool) async throws(StorageError) -> [UInt32: [UInt32]] {
        var all = try cache.scan(removingLeftovers: removingLeftovers)
        guard !bucket.down else { return all }
        for ref in bucket.objects.keys where !(all[ref.keyID]?.contains(ref.version) ?? false) {
            all[ref.keyID, default: []].append(ref.version)
        }
        return all.mapValues { $0.sorted() }
    }

    func versions(of keyID: UInt32) async throws(StorageError) -> [UInt32] {
        try up()
        let shared = bucket.objects.keys.filter { $0.keyID == keyID }.map(\.version)
        return Array(Set(shared + (try cache.versions(of: keyID)))).sorted()
    }

    func read(_ ref: KeyRef) async throws(StorageError) -> [UInt8] {
        if cache.exists(ref) { return try cache.read(ref) }
        return try await readShared(ref)
    }

    func exists(_ ref: KeyRef) async throws(StorageError) -> Bool {
        if cache.exists(ref) { return true }
        try up()
        return bucket.objects[ref] != nil
    }

    func writeNew(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError) {
        try await publish(ref, bytes: bytes)
        try cache.writeNew(ref, bytes: bytes)
    }

    func replace(_ ref: KeyRef, bytes: [UInt8]) throws(StorageError) {
        throw StorageError(location: location, message: "never overwritten", errno: EPERM)
    }

    func listShared() async throws(StorageError) -> [KeyRef] {
        try up()
        return Array(bucket.objects.keys)
    }

    func readShared(_ ref: KeyRef) async throws(StorageError) -> [UInt8] {
        try up()
        guard let bytes = bucket.objects[ref] else { throw StorageError(location: location(of: ref), message: "absent", errno: ENOENT) }
        return bytes
    }

    func publish(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError) {
        try up()
        bucket.state.withLock { $0.beforeCreate }?(ref)
        guard bucket.put(ref, bytes) else { throw StorageError(location: location(of: ref), message: "exists", errno: EEXIST) }
    }
}
