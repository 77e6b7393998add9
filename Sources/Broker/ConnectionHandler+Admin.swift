import BrokerProtocol
import KeyStore
import NIOCore
import SystemSupport

/// ADMIN (0x06, an extension to v1): "rewrap MASTER_KEY" or "unlock TOKEN_CODE" on the bound
/// instance; only for admins. Answers a JSON document.
extension ConnectionHandler {
    func admin(context: ChannelHandlerContext, session: Session, op: UInt8, requestID: UInt32, command: String) {
        let uid = peerUID
        guard session.isAdmin else {
            broker.counters.denied.add(1, ordering: .relaxed)
            broker.peerLog.report(.denied, uid: uid, level: .warning, metadata: ["peer_uid": "\(uid)", "event": "peer_denied"]) {
                "denied admin command from uid \(uid): not in admins"
            }
            fail(context: context, op: op, requestID: requestID, status: .denied,
                 message: "uid \(uid) may not run admin commands; add the user to admins", close: false)
            return
        }
        // Admin words end up in log lines and file names' neighbours: printable ASCII only.
        guard command.utf8.allSatisfy({ (0x20...0x7E).contains($0) }), command.utf8.count <= 4096 else {
            fail(context: context, op: op, requestID: requestID, status: .badRequest,
                 message: "an admin command is at most 4096 printable ASCII characters; got \(PeerText.quoted(command))", close: false)
            return
        }
        let words = command.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let store = session.store
        let instance = session.instance
        @Sendable func answer(_ members: [(String, JSONValue)]) -> ByteBuffer {
            var buffer = ByteBuffer()
            buffer.writeResponse(op: op, requestID: requestID, status: .ok) { $0.writeProtocolString(JSONValue.object(members).serialized) }
            return buffer
        }
        switch (words.first, words.count) {
        case ("rewrap", 2):
            let target = words[1]
            logger.notice("uid \(uid) asked to rewrap every key of instance \"\(instance)\" under \(PeerText.quoted(target, limit: 2048))")
            answerLater(context: context, op: op, requestID: requestID) {
                let report = await store.rewrap(to: target, concurrency: 8)
                return answer([
                    ("instance", .string(instance)),
                    ("master_key", .string(target)),
                    ("rewrapped", .int(report.rewrapped.count)),
                    ("failed", .array(report.failed.map { .object([("id", .int(Int($0.ref.keyID))), ("version", .int(Int($0.ref.version))),
                                                                   ("error", .string($0.message))]) })),
                ])
            }
        case ("unlock", 2):
            let code = words[1]
            logger.notice("uid \(uid) unlocks instance \"\(instance)\"")
            answerLater(context: context, op: op, requestID: requestID) {
                let message = try await store.unlock(tokenCode: code)
                return answer([("instance", .string(instance)), ("unlocked", .bool(true)), ("message", .string(message))])
            }
        default:
            fail(context: context, op: op, requestID: requestID, status: .badRequest,
                 message: "unknown admin command \(PeerText.quoted(words.first ?? "")); expected \"rewrap MASTER_KEY\" or \"unlock TOKEN_CODE\"", close: false)
        }
    }
}
