import BrokerProtocol
import KeyStore

extension InstanceKeyStore.MoveReport {
    /// The ADMIN answer to `rewrap-into INSTANCE` (docs/protocol.md).
    func answer(from instance: String, into target: InstanceKeyStore) -> RewrapIntoAnswer {
        RewrapIntoAnswer(instance: instance, into: target.name, provider: target.provider.name, copied: copied.count, present: present.count,
                         failed: failed.map { KeyVersionFailure(ref: $0.ref, message: $0.message) })
    }
}
