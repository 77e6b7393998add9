import BrokerProtocol
import SecureMemory
import SystemSupport

extension InstanceKeyStore {
    /// What moving a key set into another instance did.
    public struct MoveReport: Sendable {
        public var copied: [KeyRef] = []
        /// Already in the target with the same key bytes.
        public var present: [KeyRef] = []
        public var failed: [(ref: KeyRef, message: String)] = []
    }

    private enum MoveOutcome: Sendable {
        case copied, present, failed(String)
    }

    /// Copies every stored version into `target`, wrapped by the target's provider (aws → kmip,
    /// kmip → aws, local → either): the data keys keep their bytes, so data encrypted with them
    /// stays readable. Each new blob is unwrapped and compared with the key before it is written
    /// (`writeNew`, never over an existing version); a version the target already holds is
    /// compared, not replaced. Nothing in this instance changes.
    public func move(into target: InstanceKeyStore, concurrency: Int) async -> MoveReport {
        let refs = state.withLock { KeyRef.all(in: $0.index) }
        let outcomes = await mapWithBoundedConcurrency(refs, limit: concurrency) { ref in await self.moveOne(ref, into: target) }
        var report = MoveReport()
        for (ref, outcome) in zip(refs, outcomes) {
            switch outcome {
            case .copied: report.copied.append(ref)
            case .present: report.present.append(ref)
            case let .failed(message): report.failed.append((ref, message))
            }
        }
        logger.notice("copied \(report.copied.count) of \(refs.count) stored key versions into instance \"\(target.name)\" (provider \(target.provider.name))\(report.failed.isEmpty ? "" : ", \(report.failed.count) failed")")
        return report
    }

    private func moveOne(_ ref: KeyRef, into target: InstanceKeyStore) async -> MoveOutcome {
        let path = target.files.location(of: ref)
        do throws(KeyStoreError) {
            let key = try await self.key(ref)
            let present: Bool
            do { present = try await target.files.exists(ref) } catch { throw KeyStoreError(error) }
            if present {
                guard try await target.key(ref).isEqual(to: key) else {
                    throw KeyStoreError(.corrupt, "\(path) exists and holds another key; left as it is")
                }
                return .present
            }
            guard let wrapper = target.provider as? any KeyWrappingProvider else {
                throw KeyStoreError(.internal, "provider \"\(target.provider.name)\" of instance \"\(target.name)\" cannot wrap keys it did not make")
            }
            let wrapped = try await wrapper.wrapDataKey(key, for: ref)
            guard try await target.provider.unwrapDataKey(wrapped, for: ref, path: path).isEqual(to: key) else {
                throw KeyStoreError(.corrupt, "the new blob unwraps to a different key; nothing was written")
            }
            do { try await target.files.writeNew(ref, bytes: wrapped) } catch { throw KeyStoreError(error) }
            // Loaded the way the target serves it from now on: from its store, through its provider.
            guard try await target.key(ref).isEqual(to: key) else {
                throw KeyStoreError(.corrupt, "\(path) does not load back to the same key")
            }
            return .copied
        } catch {
            logger.error("cannot copy \(ref) into instance \"\(target.name)\": \(error.message)", metadata: ["key_id": "\(ref.keyID)", "version": "\(ref.version)"])
            return .failed(error.message)
        }
    }
}
