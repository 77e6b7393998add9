import BrokerProtocol

/// A store many brokers share (S3), in front of a local cache directory. What `keybrokerctl
/// store status|push|verify` needs beyond `KeyFileStore`: the store's and the cache's contents
/// apart, and the last look at the store.
public protocol SharedKeyFileStore: KeyFileStore {
    /// The local write-through cache (`state_dir/<instance>`).
    var cache: KeyFileDirectory { get }

    /// Every version in the shared store (not the cache).
    func listShared() async throws(StorageError) -> [KeyRef]

    /// One object's bytes, from the shared store (not the cache).
    func readShared(_ ref: KeyRef) async throws(StorageError) -> [UInt8]

    /// Creates one object in the shared store only if it is absent (`alreadyExists` otherwise).
    func publish(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError)

    /// The last complete listing of the store (Unix time), and the last failure since.
    var sync: SharedStoreSync { get }

    /// How often other brokers' new versions are looked for, in milliseconds.
    var refreshMilliseconds: Int { get }
}

public struct SharedStoreSync: Sendable {
    public var lastListing: Int64?
    public var objects: Int?
    public var lastError: String?

    public init(lastListing: Int64? = nil, objects: Int? = nil, lastError: String? = nil) {
        self.lastListing = lastListing
        self.objects = objects
        self.lastError = lastError
    }
}
