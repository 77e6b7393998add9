import BrokerProtocol
import Glibc
import SystemSupport

/// Where one instance's wrapped data keys are kept, one blob per `KeyRef`: a local directory
/// (`KeyFileDirectory`) or a shared store (S3, with the directory as its write-through cache).
///
/// A store keeps bytes and knows nothing of providers: a version, once written, is never
/// overwritten except by `replace` (rewrap: the same key under another master key; a shared store
/// refuses it), and nothing is ever deleted. The directory's calls block the calling task, a
/// remote store's await its service; `InstanceKeyStore` makes them from tasks, never from an
/// event loop.
public protocol KeyFileStore: Sendable {
    /// Where the store is, for log lines (a directory path, a bucket URL).
    var location: String { get }

    /// Names one version in messages (its file path or object key).
    func location(of ref: KeyRef) -> String

    /// Creates what is missing (the directory) and checks that the store can be used.
    func prepare() async throws(StorageError)

    /// The versions present, per key id, ascending. With `removingLeftovers`, traces of writes a
    /// crash interrupted are cleaned up (at start-up only: a scan while the daemon runs must leave
    /// writes in flight alone).
    func scan(removingLeftovers: Bool) async throws(StorageError) -> [UInt32: [UInt32]]

    /// The versions of one key id present now, ascending (a shared store asks its service).
    func versions(of keyID: UInt32) async throws(StorageError) -> [UInt32]

    func read(_ ref: KeyRef) async throws(StorageError) -> [UInt8]

    /// False when the version is certainly absent; a store that cannot tell (its service is
    /// down) throws.
    func exists(_ ref: KeyRef) async throws(StorageError) -> Bool

    /// Writes a new version atomically; fails with `alreadyExists` when that version is there.
    /// When it returns, the version is durable where the store keeps it (for a shared store: the
    /// service acknowledged the create), so it may be told to a client.
    func writeNew(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError)

    /// Replaces an existing version atomically: the old bytes stay until the new ones are complete.
    func replace(_ ref: KeyRef, bytes: [UInt8]) async throws(StorageError)

    /// When the version was written (Unix milliseconds), as the store itself records it, so that
    /// every broker sharing the store agrees on when a key is due for scheduled rotation; nil when
    /// the store cannot tell.
    func creationTimeMilliseconds(of ref: KeyRef) -> Int64?

    /// The identity of the key set this store holds (`KeySetIdentity`): read when the store has
    /// one, else created once, atomically (a store shared by many brokers keeps the first one
    /// written), and never replaced. After `prepare`.
    func keySetIdentity() async throws(StorageError) -> KeySetIdentity
}

extension KeyFileStore {
    public func creationTimeMilliseconds(of ref: KeyRef) -> Int64? { nil }
}

/// A storage failure: today always a failed system call on a path (the directory store); a
/// remote store adds what its service reports.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public var cause: SystemError
    /// The whole line when the store refuses a path rather than failing on it (a directory not
    /// owned, an entry with a key file's name that is not a regular file).
    public var refusal: String?

    public init(_ cause: SystemError) {
        self.cause = cause
    }

    public init(path: String, refusal: String) {
        self.init(SystemError(path: path, operation: "use", errno: EPERM))
        self.refusal = refusal
    }

    public init(path: String, operation: String, errno: Int32) {
        self.init(SystemError(path: path, operation: operation, errno: errno))
    }

    /// A remote store's failure, told in one line; `errno` classifies it (EEXIST: the version is
    /// there, ENOENT: it is not, EIO: the service failed, EPERM: it refused).
    public init(location: String, message: String, errno: Int32) {
        self.init(SystemError(path: location, operation: "use", errno: errno))
        self.refusal = message
    }

    public var errno: Int32 { cause.errno }

    /// A write lost to a version that is already there (`writeNew`).
    public var alreadyExists: Bool { cause.errno == EEXIST }

    /// The version asked for is not in the store.
    public var notFound: Bool { cause.errno == ENOENT }

    public var description: String { refusal ?? cause.description }
}
