import BrokerProtocol
import Logging
import NIOCore

/// The session half of a connection: HELLO binds it to one instance the peer may use, once; a
/// change of the access lists or of the instances (a reload) is checked against it at once.
extension ConnectionHandler {
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is AccessPolicy.Changed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !closing else { return }
        let access = broker.access.snapshot
        let reason: String
        if let bound = session {
            // A reload replaced or removed the instance: move to its new store, or leave.
            guard let store = broker.instances[bound.instance] else {
                logger.notice("closing connection of uid \(peer.uid) (pid \(peer.pid)): instance \"\(bound.instance)\" was removed from the configuration")
                closeAfterWriting(context: context)
                return
            }
            if store !== bound.store { session = Session(instance: bound.instance, store: store, isAdmin: bound.isAdmin) }
        }
        if let session {
            let isAdmin = access.admins.contains(uid: peer.uid, gid: peer.gid)
            let isClient = access.clients[session.instance]?.contains(uid: peer.uid, gid: peer.gid) ?? false
            if session.isAdmin && !isAdmin {
                reason = "no longer in admins"
            } else if !isAdmin && !isClient {
                reason = "no longer in the clients of [instances.\(session.instance)] nor in admins"
            } else {
                return
            }
        } else if !access.anyone.contains(uid: peer.uid, gid: peer.gid) {
            reason = "no longer in the clients of any instance nor in admins"
        } else {
            return
        }
        broker.counters.denied.add(1, ordering: .relaxed)
        logger.notice("closing connection of uid \(peer.uid) (pid \(peer.pid)): \(reason)", metadata: ["event": "peer_denied"])
        closeAfterWriting(context: context)
    }

    func hello(context: ChannelHandlerContext, requestID: UInt32, version: UInt16, instance: String, client: String) {
        let op = Opcode.hello
        if let session {
            fail(context: context, op: op, requestID: requestID, status: .badRequest,
                 message: "this connection is already bound to instance \"\(session.instance)\"; open a new connection for another instance", close: true)
            return
        }
        guard version == ProtocolConstants.version else {
            fail(context: context, op: op, requestID: requestID, status: .unsupported,
                 message: "protocol version \(version) is not supported; this broker speaks version \(ProtocolConstants.version)", close: true)
            return
        }
        // Both came from the peer: quoted, escaped and cut before they reach a log line or an answer.
        let shownInstance = PeerText.quoted(instance)
        let shownClient = PeerText.quoted(client)
        let access = broker.access.snapshot
        let isAdmin = access.admins.contains(uid: peer.uid, gid: peer.gid)
        let metadata: Logger.Metadata = ["peer_uid": "\(peer.uid)", "event": "peer_denied"]
        guard let store = broker.instances[instance] else {
            broker.counters.denied.add(1, ordering: .relaxed)
            broker.peerLog.report(.denied, uid: peer.uid, level: .warning, metadata: metadata) {
                "denied uid \(peer.uid) (pid \(peer.pid), client \(shownClient)): instance \(shownInstance) is not configured"
            }
            fail(context: context, op: op, requestID: requestID, status: .denied,
                 message: "instance \(shownInstance) is not configured on this broker", close: true)
            return
        }
        let isClient = access.clients[instance]?.contains(uid: peer.uid, gid: peer.gid) ?? false
        guard isAdmin || isClient else {
            broker.counters.denied.add(1, ordering: .relaxed)
            broker.peerLog.report(.denied, uid: peer.uid, level: .warning, metadata: metadata.merging(["instance": "\(instance)"]) { $1 }) {
                "denied uid \(peer.uid) gid \(peer.gid) (pid \(peer.pid), client \(shownClient)) instance \(shownInstance): not in clients or admins"
            }
            fail(context: context, op: op, requestID: requestID, status: .denied,
                 message: "uid \(peer.uid) may not use instance \(shownInstance); add the user to clients of [instances.\(instance)]", close: true)
            return
        }
        session = Session(instance: instance, store: store, isAdmin: isAdmin)
        admission.authenticated()
        logger[metadataKey: "instance"] = "\(instance)"
        logger.debug("uid \(peer.uid) (pid \(peer.pid), client \(shownClient)) uses instance \"\(instance)\"\(isAdmin ? " as admin" : "")")
        answered(.hello)
        answer(context: context) { $0.writeHelloAnswer(requestID: requestID, server: BrokerContext.serverName) }
    }
}
