import BrokerProtocol
import KeyStore
import NIOCore

/// ADMIN (0x06, an extension to v1): a typed `AdminCommand` on the bound instance, only for admins.
extension ConnectionHandler {
    func admin(context: ChannelHandlerContext, session: Session, requestID: UInt32, command: AdminCommand) {
        let uid = peerUID
        guard session.isAdmin else {
            broker.counters.denied.add(1, ordering: .relaxed)
            broker.peerLog.report(.denied, uid: uid, level: .warning, metadata: ["peer_uid": "\(uid)", "event": "peer_denied"]) {
                "denied admin command from uid \(uid): not in admins"
            }
            fail(context: context, op: .admin, requestID: requestID, status: .denied,
                 message: "uid \(uid) may not run admin commands; add the user to admins", close: false)
            return
        }
        let store = session.store
        let instance = session.instance
        @Sendable func encoded(_ answer: some AdminAnswer) -> ByteBuffer {
            var buffer = ByteBuffer()
            buffer.writeAdminAnswer(requestID: requestID, answer: answer)
            return buffer
        }
        switch command {
        case let .rewrap(masterKey):
            logger.notice("uid \(uid) asked to rewrap every key of instance \"\(instance)\" under \(PeerText.quoted(masterKey, limit: 2048))")
            answerLater(context: context, op: .admin, requestID: requestID) {
                let report = await store.rewrap(to: masterKey, concurrency: 8)
                return encoded(RewrapAnswer(instance: instance, masterKey: masterKey, rewrapped: report.rewrapped.count,
                                            failed: report.failed.map { KeyVersionFailure(ref: $0.ref, message: $0.message) }))
            }
        case let .rewrapInto(name):
            guard let target = broker.instances[name], name != instance else {
                fail(context: context, op: .admin, requestID: requestID, status: .notFound,
                     message: "rewrap-into needs another configured instance; \(PeerText.quoted(name)) is not one", close: false)
                return
            }
            logger.notice("uid \(uid) asked to copy every key of instance \"\(instance)\" into instance \"\(target.name)\"")
            answerLater(context: context, op: .admin, requestID: requestID) {
                encoded(await store.move(into: target, concurrency: 8).answer(from: instance, into: target))
            }
        case .metrics:
            // One answer is one frame: the text is cut before JSON escaping could overflow it.
            let metrics = MetricsAnswer(text: broker.metricsText(limit: 48_000))
            answered(.admin)
            answer(context: context) { $0.writeAdminAnswer(requestID: requestID, answer: metrics) }
        case let .unlock(tokenCode):
            logger.notice("uid \(uid) unlocks instance \"\(instance)\"")
            answerLater(context: context, op: .admin, requestID: requestID) {
                encoded(UnlockAnswer(instance: instance, message: try await store.unlock(tokenCode: tokenCode)))
            }
        case let .store(action):
            if action != .status {
                logger.notice("uid \(uid) runs store \(action.rawValue) on instance \"\(instance)\"")
            }
            answerLater(context: context, op: .admin, requestID: requestID) {
                switch action {
                case .status: encoded(try await store.sharedStoreReport().answer(instance: instance, summary: store.summary()))
                case .push: encoded(try await store.pushToSharedStore(concurrency: 8).answer(instance: instance))
                case .verify: encoded(try await store.verifySharedStore(concurrency: 8).answer(instance: instance))
                }
            }
        }
    }
}
