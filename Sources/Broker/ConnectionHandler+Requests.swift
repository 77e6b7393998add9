import BrokerProtocol
import CKeybrokerCrypto
import KeyStore
import NIOCore
import SecureMemory

/// Dispatch: each request of a bound connection to the key store, answered inline when the answer
/// is in memory and from a task otherwise.
extension ConnectionHandler {
    func handle(_ request: Request, context: ChannelHandlerContext) {
        let op = request.op.rawValue
        let id = request.requestID
        if case let .hello(version, instance, client) = request.body {
            hello(context: context, requestID: id, version: version, instance: instance, client: client)
            return
        }
        guard let session else {
            fail(context: context, op: op, requestID: id, status: .badRequest,
                 message: "the first request on a connection must be HELLO", close: true)
            return
        }
        switch request.body {
        case .hello:
            break
        case let .latestKey(keyID):
            if let cached = session.store.cachedLatest(keyID: keyID) {
                answer(context: context) { Self.writeKey(&$0, op: op, requestID: id, version: cached.version, key: cached.key) }
                return
            }
            answerLater(context: context, op: op, requestID: id) {
                let (version, key) = try await session.store.latest(keyID: keyID)
                return Self.encodeKey(op: op, requestID: id, version: version, key: key)
            }
        case let .getKey(keyID, version):
            let ref = KeyRef(keyID: keyID, version: version)
            if let key = session.store.cachedKey(ref) {
                answer(context: context) { Self.writeKey(&$0, op: op, requestID: id, version: nil, key: key) }
                return
            }
            answerLater(context: context, op: op, requestID: id) {
                let key = try await session.store.key(ref)
                return Self.encodeKey(op: op, requestID: id, version: nil, key: key)
            }
        case let .rotate(keyID):
            rotate(context: context, store: session.store, op: op, requestID: id, keyID: keyID)
        case let .admin(command):
            admin(context: context, session: session, op: op, requestID: id, command: command)
        case .info:
            answerInfo(context: context, store: session.store, op: op, requestID: id)
        case .status:
            let visible = session.isAdmin ? Array(broker.instances.keys) : [session.instance]
            let json = broker.statusDocument(visibleInstances: visible, boundInstance: session.instance)
            answer(context: context) { $0.writeResponse(op: op, requestID: id, status: .ok) { $0.writeProtocolString(json) } }
        }
    }

    private func rotate(context: ChannelHandlerContext, store: InstanceKeyStore, op: UInt8, requestID id: UInt32, keyID: UInt32) {
        let maximumRotated = ProtocolConstants.maximumRotatedKeys
        if keyID == ProtocolConstants.allKeys, case let keys = store.summary().keyIDs, keys > maximumRotated {
            fail(context: context, op: op, requestID: id, status: .badRequest,
                 message: "instance \"\(store.name)\" has \(keys) keys and one ROTATE answers for at most \(maximumRotated); rotate them by id", close: false)
            return
        }
        answerLater(context: context, op: op, requestID: id) {
            try await RotateAnswer.rotate(store, keyID: keyID, op: op, requestID: id)
        }
    }

    /// INFO: what the bound instance is. LOCKED while it waits for its first `keybrokerctl unlock`,
    /// so a client starting now knows to wait rather than fail on its first key.
    private func answerInfo(context: ChannelHandlerContext, store: InstanceKeyStore, op: UInt8, requestID id: UInt32) {
        let provider = store.provider
        if let unlockable = provider as? any UnlockableProvider, unlockable.awaitsUnlock {
            fail(context: context, op: op, requestID: id, status: .locked,
                 message: "instance \"\(store.name)\" waits for two-factor start: run keybrokerctl unlock --instance \(store.name) --token-code NNNNNN",
                 close: false)
            return
        }
        var fields: [(name: String, value: String)] = [("instance", store.name), ("provider", provider.name)]
        if let masterKey = provider.masterKeyName { fields.append(("master_key", masterKey)) }
        if let location = provider.masterKeyLocation { fields.append(("location", location)) }
        let info = InstanceInfo(fields)
        answer(context: context) { $0.writeResponse(Response(op: op, requestID: id, status: .ok, body: .info(info))) }
    }

    // MARK: Answers

    static func writeKey(_ buffer: inout ByteBuffer, op: UInt8, requestID: UInt32, version: UInt32?, key: SecureBytes) {
        buffer.writeResponse(op: op, requestID: requestID, status: .ok) { buffer in
            if let version { buffer.writeInteger(version) }
            buffer.writeInteger(UInt16(key.count))
            key.withUnsafeBytes { _ = buffer.writeBytes($0) }
        }
    }

    static func encodeKey(op: UInt8, requestID: UInt32, version: UInt32?, key: SecureBytes) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(16 + key.count)
        writeKey(&buffer, op: op, requestID: requestID, version: version, key: key)
        return buffer
    }

    /// Runs `answer` off the event loop; what it encodes, or the error it throws, is written on
    /// the event loop and counted against the output budget like any answer.
    func answerLater(context: ChannelHandlerContext, op: UInt8, requestID: UInt32,
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

    private static func encodeAnswer(op: UInt8, requestID: UInt32, broker: BrokerContext,
                                     _ answer: @Sendable () async throws -> ByteBuffer) async -> ByteBuffer {
        do {
            let buffer = try await answer()
            guard buffer.readableBytes - 4 <= ProtocolConstants.maximumFrameLength else {
                throw KeyStoreError(.internal, "the answer is larger than one frame (\(ProtocolConstants.maximumFrameLength) bytes)")
            }
            return buffer
        } catch {
            let failure = error as? KeyStoreError ?? KeyStoreError(.internal, "\(error)")
            broker.counters.errors.add(1, ordering: .relaxed)
            var buffer = ByteBuffer()
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
