import BrokerProtocol
import SystemSupport

/// Scheduled rotation (`rotate_after`): every key whose newest version is older than the period
/// gets a new version. The age is the store's own record of when the version was written (a key
/// file's modification time), so several brokers sharing one store agree on which keys are due,
/// and the new version is created with the store's exclusive create: when two brokers race for
/// it, one writes it and the other adopts it. One new version per period, not one per broker.
extension InstanceKeyStore {
    public var rotateAfterSeconds: Int64? {
        get { state.withLock { $0.rotateAfterSeconds } }
        set {
            state.withLock { state in
                if state.rotateAfterSeconds != newValue { state.nextRotationDue = nil }
                state.rotateAfterSeconds = newValue
            }
        }
    }

    /// When the next key falls due (Unix milliseconds), as found by the last check; nil before the
    /// first check, without `rotate_after`, or with no key yet.
    public var nextRotationDue: Int64? { state.withLock { $0.nextRotationDue } }

    public struct ScheduledRotation: Sendable {
        /// Versions this broker wrote.
        public var rotated: [KeyRef] = []
        /// Versions another writer (a broker sharing the store) wrote first, adopted here.
        public var adopted: [KeyRef] = []
        public var failed: [(keyID: UInt32, error: KeyStoreError)] = []
        /// Unix milliseconds.
        public var nextDue: Int64?
    }

    /// Looks at the store (adopting versions other brokers wrote), then rotates each key whose
    /// newest version was written `rotate_after` or longer before `now` (Unix milliseconds).
    public func rotateDueKeys(now: Int64) async -> ScheduledRotation {
        var report = ScheduledRotation()
        guard let seconds = rotateAfterSeconds else { return report }
        let period = seconds * 1000
        if let inStore = try? await files.scan(removingLeftovers: false) {
            merge(inStore)
        }
        let latest = state.withLock { state in state.index.compactMap { id, versions in versions.last.map { KeyRef(keyID: id, version: $0) } } }
        var due: [KeyRef] = []
        for ref in latest {
            let written = files.creationTimeMilliseconds(of: ref) ?? firstSeen(ref, now: now)
            if now - written >= period {
                due.append(ref)
            } else {
                report.nextDue = min(report.nextDue ?? .max, written + period)
            }
        }
        let writes = due.sorted { $0.keyID < $1.keyID }.map { ($0, startWrite(keyID: $0.keyID, onlyIfNew: false, ifLatestIs: $0.version)) }
        for (ref, write) in writes {
            do {
                let version = try await write.value
                let new = KeyRef(keyID: ref.keyID, version: version)
                let mine = state.withLock { $0.keys[new] != nil }
                if version > ref.version && mine {
                    report.rotated.append(new)
                    logger.info("rotated key \(ref.keyID) to version \(version): version \(ref.version) was older than rotate_after",
                                metadata: ["key_id": "\(ref.keyID)", "version": "\(version)", "event": "key_rotated"])
                } else {
                    report.adopted.append(new)
                }
                report.nextDue = min(report.nextDue ?? .max, (files.creationTimeMilliseconds(of: new) ?? now) + period)
            } catch let error as KeyStoreError {
                report.failed.append((ref.keyID, error))
            } catch {
                report.failed.append((ref.keyID, KeyStoreError(.internal, "\(error)")))
            }
        }
        if !report.failed.isEmpty {
            // Retried at the next check; a key that cannot be rotated stays due.
            report.nextDue = now
        }
        let next = report.nextDue
        state.withLock { $0.nextRotationDue = next }
        return report
    }

    private func firstSeen(_ ref: KeyRef, now: Int64) -> Int64 {
        state.withLock { state in
            if let seen = state.firstSeen[ref] { return seen }
            state.firstSeen[ref] = now
            return now
        }
    }
}
