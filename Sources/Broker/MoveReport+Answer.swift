import KeyStore
import SystemSupport

extension InstanceKeyStore.MoveReport {
    /// The ADMIN answer to `rewrap-into INSTANCE` (docs/protocol.md).
    func answerMembers(from instance: String, into target: InstanceKeyStore) -> [(String, JSONValue)] {
        [
            ("instance", .string(instance)),
            ("into", .string(target.name)),
            ("provider", .string(target.provider.name)),
            ("copied", .int(copied.count)),
            ("present", .int(present.count)),
            ("failed", .array(failed.map { .object([("id", .int(Int($0.ref.keyID))), ("version", .int(Int($0.ref.version))),
                                                   ("error", .string($0.message))]) })),
        ]
    }
}
