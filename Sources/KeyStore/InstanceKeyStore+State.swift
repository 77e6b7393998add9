import BrokerProtocol
import SecureMemory

extension InstanceKeyStore {
    /// What the store's lock guards. The index and the unwrapped keys change only through the
    /// methods below, which keep `newest` in step with them: the cached LATEST_KEY answer is then
    /// one dictionary lookup, with no second lookup for the version's key and no reference counted.
    struct State {
        /// Versions on disk, ascending, per key id.
        private(set) var index: [UInt32: [UInt32]] = [:]
        private(set) var keys: [KeyRef: SecureBytes] = [:]
        /// The newest version of each key id whose key is in memory. The bytes belong to the
        /// `SecureBytes` in `keys`, which outlives the entry (keys are only dropped all at once,
        /// and `newest` with them).
        private(set) var newest: [UInt32: NewestKey] = [:]
        var loads: [KeyRef: Task<SecureBytes, any Error>] = [:]
        /// The newest write of a version per key id; the next one waits for it.
        var writes: [UInt32: PendingWrite] = [:]
        var nextWriteSerial: UInt64 = 0
        var failedLoads = 0
        var lastError: String?
        /// Scheduled rotation (`rotate_after`, seconds), and when the next key falls due (Unix ms).
        var rotateAfterSeconds: Int64?
        var nextRotationDue: Int64?
        /// When versions were first seen, for stores that record no creation time.
        var firstSeen: [KeyRef: Int64] = [:]
        var keySet: KeySetIdentity?

        /// The key's address is kept as a number: a pointer would tie the lock's state to every
        /// caller's isolation region, and the bytes are valid only under the lock anyway.
        struct NewestKey: Sendable {
            var version: UInt32
            private var address: UInt
            private var count: Int

            init(version: UInt32, key: SecureBytes) {
                self.version = version
                let bytes = key.unsafeBytes
                address = UInt(bitPattern: bytes.baseAddress)
                count = bytes.count
            }

            var bytes: UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: count)
            }
        }

        /// The index as a scan of the store found it.
        mutating func replaceIndex(_ index: [UInt32: [UInt32]]) {
            self.index = index
            newest.removeAll()
            for keyID in index.keys { updateNewest(keyID) }
        }

        /// Every version of `keyID`, ascending.
        mutating func setVersions(_ versions: [UInt32], of keyID: UInt32) {
            index[keyID] = versions
            updateNewest(keyID)
        }

        /// Adds one version (once, in order: an imported version may have arrived meanwhile).
        mutating func addVersion(_ ref: KeyRef) {
            var versions = index[ref.keyID, default: []]
            guard !versions.contains(ref.version) else { return }
            versions.append(ref.version)
            versions.sort()
            setVersions(versions, of: ref.keyID)
        }

        mutating func insertKey(_ key: SecureBytes, for ref: KeyRef) {
            keys[ref] = key
            if index[ref.keyID]?.last == ref.version { updateNewest(ref.keyID) }
        }

        mutating func removeAllKeys() {
            newest.removeAll()
            keys.removeAll()
        }

        private mutating func updateNewest(_ keyID: UInt32) {
            if let version = index[keyID]?.last, let key = keys[KeyRef(keyID: keyID, version: version)] {
                newest[keyID] = NewestKey(version: version, key: key)
            } else {
                newest[keyID] = nil
            }
        }
    }
}
