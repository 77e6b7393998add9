import BrokerProtocol
import KeyStore
import NIOCore

/// The answer to ROTATE: OK with every new version; when some keys of a ROTATE of every key
/// failed, PARTIAL with each key's result (docs/protocol.md), so the keys that were rotated are
/// not reported as an error; when no key was rotated, the first key's error.
enum RotateAnswer {
    static func rotate(_ store: InstanceKeyStore, keyID: UInt32, requestID: UInt32) async throws(KeyStoreError) -> ByteBuffer {
        let outcome = try await store.rotateEach(keyID: keyID == ProtocolConstants.allKeys ? nil : keyID)
        let rotated = outcome.rotated
        var buffer = ByteBuffer()
        guard let first = outcome.failed.first else {
            buffer.writeRotateAnswer(requestID: requestID, rotated: rotated)
            return buffer
        }
        if rotated.isEmpty { throw first.error }
        let report = RotationReport(
            message: "rotated \(rotated.count) of \(rotated.count + outcome.failed.count) keys of instance \"\(store.name)\"; "
                + "key \(first.keyID) failed: \(first.error.message)",
            rotated: rotated,
            failed: outcome.failed.map { RotationReport.Failure(keyID: $0.keyID, status: ConnectionHandler.status(for: $0.error.code)) })
        buffer.writePartialRotationAnswer(requestID: requestID, report: report)
        return buffer
    }
}
