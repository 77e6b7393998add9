import BrokerProtocol
import SystemSupport

/// Writes of new versions (a key's first, a rotation's next): serialised per key id, so version
/// numbers never collide here, and raced safely against every other writer of a shared store
/// (an import, another broker), whose version is adopted, never overwritten.
extension InstanceKeyStore {
    struct PendingWrite {
        var serial: UInt64
        var task: Task<UInt32, any Error>
    }

    /// Starts the write of the next version of `keyID`, after any write already queued for it.
    /// With `onlyIfNew`, a key that has versions by then is left alone and its newest is returned;
    /// with `ifLatestIs`, a key whose newest version is another by then (rotated meanwhile, here or
    /// by another broker sharing the store) is left alone too.
    func startWrite(keyID: UInt32, onlyIfNew: Bool, ifLatestIs expected: UInt32? = nil) -> Task<UInt32, any Error> {
        state.withLock { state in
            if onlyIfNew, let pending = state.writes[keyID] { return pending.task }
            let previous = state.writes[keyID]?.task
            state.nextWriteSerial += 1
            let serial = state.nextWriteSerial
            let write = Task<UInt32, any Error> {
                _ = try? await previous?.value
                defer {
                    self.state.withLock { state in
                        if state.writes[keyID]?.serial == serial { state.writes[keyID] = nil }
                    }
                }
                return try await self.writeNextVersion(keyID: keyID, onlyIfNew: onlyIfNew, ifLatestIs: expected)
            }
            state.writes[keyID] = PendingWrite(serial: serial, task: write)
            return write
        }
    }

    /// How often a rotation that keeps losing the race for the next version number tries again.
    static let createAttempts = 5

    private func writeNextVersion(keyID: UInt32, onlyIfNew: Bool, ifLatestIs expected: UInt32?) async throws -> UInt32 {
        var attempt = 0
        while true {
            attempt += 1
            switch try await writeNextVersionOnce(keyID: keyID, onlyIfNew: onlyIfNew, ifLatestIs: expected,
                                                  lastAttempt: attempt >= Self.createAttempts) {
            case let .written(version), let .adopted(version): return version
            case .lost: continue
            }
        }
    }

    private enum WriteOutcome { case written(UInt32), adopted(UInt32), lost }

    private func writeNextVersionOnce(keyID: UInt32, onlyIfNew: Bool, ifLatestIs expected: UInt32?,
                                      lastAttempt: Bool) async throws(KeyStoreError) -> WriteOutcome {
        let current = state.withLock { $0.index[keyID]?.last }
        if onlyIfNew, let current { return .adopted(current) }
        if let expected, let current, current != expected { return .adopted(current) }
        let ref = KeyRef(keyID: keyID, version: (current ?? 0) + 1)
        do throws(KeyStoreError) {
            guard ref.version != 0 else { throw KeyStoreError(.internal, "key \(keyID) has no version numbers left") }
            let (wrapped, key) = try await provider.generateDataKey(for: ref, length: keyLength)
            do {
                try await files.writeNew(ref, bytes: wrapped)
            } catch {
                guard error.alreadyExists else { throw KeyStoreError(error) }
                // Someone else (an import, another broker on the same store, another broker's
                // scheduled rotation) wrote this version meanwhile: theirs stays and is adopted,
                // ours is dropped. A new key and a scheduled rotation are theirs; a rotation asked
                // for goes on to the version after theirs.
                _ = try await adoptFromStore(keyID: keyID)
                logger.info("\(ref) was created elsewhere at the same time; adopted that one",
                            metadata: ["key_id": "\(keyID)", "version": "\(ref.version)", "event": "key_adopted"])
                if onlyIfNew, let newest = state.withLock({ $0.index[keyID]?.last }) { return .adopted(newest) }
                if expected != nil { return .adopted(ref.version) }
                guard !lastAttempt else {
                    throw KeyStoreError(.unavailable, "key \(keyID) is being rotated elsewhere at the same time (\(Self.createAttempts) versions taken in a row); ask again")
                }
                return .lost
            }
            let written = unixNowMilliseconds()
            state.withLock { state in
                state.addVersion(ref)
                state.insertKey(key, for: ref)
                if let period = state.rotateAfterSeconds {
                    state.nextRotationDue = min(state.nextRotationDue ?? .max, written + period * 1000)
                }
            }
            logger.info("generated key \(keyID) version \(ref.version) (\(keyLength * 8) bits)",
                        metadata: ["key_id": "\(keyID)", "version": "\(ref.version)", "event": "key_generated"])
            return .written(ref.version)
        } catch {
            state.withLock { $0.lastError = error.message }
            logger.error("cannot create \(ref): \(error.message)", metadata: ["key_id": "\(keyID)", "version": "\(ref.version)", "event": "key_failed"])
            throw error
        }
    }
}
