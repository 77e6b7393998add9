import BrokerProtocol
import CKeybrokerCrypto
import KeyStore
import NIOCore
import SecureMemory
import SystemSupport

/// Dispatch: each request of a bound connection to the key store, answered inline when the answer
/// is in memory and from a task otherwise.
extension ConnectionHandler {
    func handle(_ request: Request, context: ChannelHandlerContext) {
        let op = request.op
        let id = request.requestID
        if case let .hello(version, instance, client) = request.body {
            hello(context: context, requestID: id, version: version, instance: instance, client: client)
            return
        }
        // Only the store, not the whole session, on the path of every key request: one reference
        // counted less per request.
        guard let store = session?.store else {
            fail(context: context, op: op, requestID: id, status: .badRequest,
                 message: "the first request on a connection must be HELLO", close: true)
            return
        }
        switch request.body {
        case .hello:
            break
        case let .latestKey(keyID):
            let cached = answerKey(context: context) { buffer in
                store.withCachedLatest(keyID: keyID) { buffer.writeLatestKeyAnswer(requestID: id, version: $0, key: $1) }
            }
            if cached {
                answered(.latestKey)
                return
            }
            answerLater(context: context, op: op, requestID: id) {
                let (version, key) = try await store.latest(keyID: keyID)
                return Self.encoded(capacity: 16 + key.count) { Self.writeLatestKey(&$0, requestID: id, version: version, key: key) }
            }
        case let .getKey(keyID, version):
            let ref = KeyRef(keyID: keyID, version: version)
            let cached = answerKey(context: context) { buffer in
                store.withCachedKey(ref) { buffer.writeGetKeyAnswer(requestID: id, key: $0) }
            }
            if cached {
                answered(.getKey)
                return
            }
            answerLater(context: context, op: op, requestID: id) {
                let key = try await store.key(ref)
                return Self.encoded(capacity: 16 + key.count) { Self.writeGetKey(&$0, requestID: id, key: key) }
            }
        case let .rotate(keyID):
            rotate(context: context, store: store, requestID: id, keyID: keyID)
        case let .admin(command):
            guard let session else { return }
            admin(context: context, session: session, requestID: id, command: command)
        case .info:
            answerInfo(context: context, store: store, requestID: id)
        case .status:
            guard let session else { return }
            let visible = session.isAdmin ? Array(broker.instances.keys) : [session.instance]
            let document = broker.statusDocument(visibleInstances: visible, boundInstance: session.instance)
            answered(.status)
            answer(context: context) { $0.writeStatusAnswer(requestID: id, document: document) }
        }
    }

    /// Counts an OK answered inline (from memory); failures and answers from tasks count themselves.
    func answered(_ op: Opcode) {
        MetricsRegistry.shared.countAnswer(op: op.rawValue, status: ResponseStatus.ok.rawValue)
    }

    private func rotate(context: ChannelHandlerContext, store: InstanceKeyStore, requestID id: UInt32, keyID: UInt32) {
        let maximumRotated = ProtocolConstants.maximumRotatedKeys
        if keyID == ProtocolConstants.allKeys, case let keys = store.summary().keyIDs, keys > maximumRotated {
            fail(context: context, op: .rotate, requestID: id, status: .badRequest,
                 message: "instance \"\(store.name)\" has \(keys) keys and one ROTATE answers for at most \(maximumRotated); rotate them by id", close: false)
            return
        }
        answerLater(context: context, op: .rotate, requestID: id) {
            try await RotateAnswer.rotate(store, keyID: keyID, requestID: id)
        }
    }

    /// INFO: what the bound instance is. LOCKED while it waits for its first `keybrokerctl unlock`,
    /// so a client starting now knows to wait rather than fail on its first key.
    private func answerInfo(context: ChannelHandlerContext, store: InstanceKeyStore, requestID id: UInt32) {
        let provider = store.provider
        if let unlockable = provider as? any UnlockableProvider, unlockable.awaitsUnlock {
            fail(context: context, op: .info, requestID: id, status: .locked,
                 message: "instance \"\(store.name)\" waits for two-factor start: run keybrokerctl unlock --instance \(store.name) --token-code NNNNNN",
                 close: false)
            return
        }
        var fields: [(name: String, value: String)] = [("instance", store.name), ("provider", provider.name)]
        if let masterKey = provider.masterKeyName { fields.append(("master_key", masterKey)) }
        if let location = provider.masterKeyLocation { fields.append(("location", location)) }
        if let keySet = store.keySet { fields.append(("key_set", keySet.value)) }
        let info = InstanceInfo(fields)
        answered(.info)
        answer(context: context) { $0.writeInfoAnswer(requestID: id, info: info) }
    }

    // MARK: Answers

    /// Key bytes go from locked memory straight into the frame.
    static func writeLatestKey(_ buffer: inout ByteBuffer, requestID: UInt32, version: UInt32, key: SecureBytes) {
        key.withUnsafeBytes { buffer.writeLatestKeyAnswer(requestID: requestID, version: version, key: $0) }
    }

    static func writeGetKey(_ buffer: inout ByteBuffer, requestID: UInt32, key: SecureBytes) {
        key.withUnsafeBytes { buffer.writeGetKeyAnswer(requestID: requestID, key: $0) }
    }

    static func encoded(capacity: Int, _ write: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(capacity)
        write(&buffer)
        return buffer
    }

    /// Runs `answer` off the event loop; what it encodes, or the error it throws, is written on
    /// the event loop and counted against the output budget like any answer.
    func answerLater(context: ChannelHandlerContext, op: Opcode, requestID: UInt32,
                     _ answer: @escaping @Sendable () async throws -> ByteBuffer) {
        guard inFlight < broker.limits.maxInFlightPerConnection else {
            let uid = peerUID
            let limit = broker.limits.maxInFlightPerConnection
            broker.peerLog.report(.tooManyInFlight, uid: uid, level: .warning, metadata: ["peer_uid": "\(uid)"]) {
                "closing connection of uid \(uid): more than \(limit) requests in flight (max_in_flight_per_connection)"
            }
            fail(context: context, op: op, requestID: requestID, status: .unavailable,
                 message: "more than \(limit) requests in flight on one connection", close: true)
            return
        }
        inFlight += 1
        broker.counters.inFlight.add(1, ordering: .relaxed)
        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: eventLoop)
        let broker = broker
        Task {
            let buffer = await ConnectionHandler.encodeAnswer(op: op, requestID: requestID, broker: broker, answer)
            eventLoop.execute {
                handler.value.deliver(buffer, context: boundContext.value)
            }
        }
    }

    /// An answer from a task. In flight until the socket has taken it, so shutdown waits for it
    /// (up to frame_timeout_ms).
    private func deliver(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        let broker = broker
        let finished = {
            self.inFlight -= 1
            broker.counters.inFlight.subtract(1, ordering: .relaxed)
        }
        guard !closing, context.channel.isActive else {
            buffer.withUnsafeReadableBytes { CKB_cleanse(UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) }
            finished()
            return
        }
        write(buffer, context: context, then: finished)
    }

    private static func encodeAnswer(op: Opcode, requestID: UInt32, broker: BrokerContext,
                                     _ answer: @Sendable () async throws -> ByteBuffer) async -> ByteBuffer {
        do {
            let buffer = try await answer()
            guard buffer.readableBytes - 4 <= ProtocolConstants.maximumFrameLength else {
                throw KeyStoreError(.internal, "the answer is larger than one frame (\(ProtocolConstants.maximumFrameLength) bytes)")
            }
            // The status byte of the (one) answer: OK, or PARTIAL from a ROTATE of every key.
            MetricsRegistry.shared.countAnswer(op: op.rawValue, status: buffer.getInteger(at: buffer.readerIndex + 9, as: UInt8.self) ?? 0)
            return buffer
        } catch {
            let failure = error as? KeyStoreError ?? KeyStoreError(.internal, "\(error)")
            broker.counters.errors.add(1, ordering: .relaxed)
            var buffer = ByteBuffer()
            MetricsRegistry.shared.countAnswer(op: op.rawValue, status: failure.code == .refused ? ResponseStatus.refused.rawValue
                                                                                                 : status(for: failure.code).rawValue)
            if failure.code == .refused {
                buffer.writeRefusal(op: op, requestID: requestID,
                                    KeyServiceRefusal(message: failure.message, code: failure.serviceCode ?? "", key: failure.serviceKey ?? ""))
            } else {
                buffer.writeFailure(op: op, requestID: requestID, status: status(for: failure.code), message: failure.message)
            }
            return buffer
        }
    }

    static func status(for code: KeyStoreError.Code) -> ResponseStatus {
        switch code {
        case .notFound: .notFound
        case .unavailable: .unavailable
        case .refused: .refused
        case .locked: .locked
        case .corrupt, .internal: .internal
        }
    }
}
