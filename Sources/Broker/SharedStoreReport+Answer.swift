import BrokerProtocol
import KeyStore
import SystemSupport

extension InstanceKeyStore.SharedStoreReport {
    /// The ADMIN answer to `store status` (docs/protocol.md).
    func answer(instance: String, summary: InstanceKeyStore.Summary) -> StoreStatusAnswer {
        StoreStatusAnswer(instance: instance, store: location, objects: objects, keyIDs: keyIDs, versionsServed: summary.versions,
                          localOnly: localOnly, notCached: notCached, lastSync: sync.lastListing.map { CivilTime(unix: $0).iso8601 },
                          lastError: sync.lastError, refreshMilliseconds: refreshMilliseconds)
    }
}

extension InstanceKeyStore.PushReport {
    /// The ADMIN answer to `store push`.
    func answer(instance: String) -> StorePushAnswer {
        StorePushAnswer(instance: instance, uploaded: uploaded.count, present: present.count,
                        failed: failed.map { KeyVersionFailure(ref: $0.ref, message: $0.message) })
    }
}

extension InstanceKeyStore.VerifyReport {
    /// The ADMIN answer to `store verify`.
    func answer(instance: String) -> StoreVerifyAnswer {
        StoreVerifyAnswer(instance: instance, checked: checked, verified: verified, localOnly: localOnly,
                          failed: failed.map { KeyVersionFailure(ref: $0.ref, message: $0.message) })
    }
}
