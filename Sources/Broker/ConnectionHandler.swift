import BrokerProtocol
import CKeybrokerCrypto
import CKeybrokerSystem
import KeyStore
import Logging
import NIOCore
import SecureMemory
import SystemSupport

/// One client connection: splits the bytes into frames, authenticates the peer at HELLO, answers
/// cached keys inline on the event loop, and hands everything that may wait (file reads, KMS,
/// writes) to a task whose answer is written whenever it is ready, so responses may come out of
/// order.
///
/// It runs the frame decoder itself rather than behind a ByteToMessageHandler because it must know
/// when a frame has started but not finished: a peer that stalls mid-frame, or never says HELLO,
/// is disconnected after `frame_timeout_ms`, and one that stays idle after `idle_timeout_ms`.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Session {
        let instance: String
        let store: InstanceKeyStore
        let isAdmin: Bool
    }

    private let broker: BrokerContext
    private var peer: CKB_peer_credentials?
    private var session: Session?
    private var inFlight = 0
    /// Answers written on the event loop during one read, sent together at the end of the read
    /// with one write and one zeroing of the key bytes they contain.
    private var outbound: ByteBuffer?
    private var closing = false
    private var logger: Logger
    private var decoder = FrameDecoder()
    private var inbound: ByteBuffer?
    private var connectedAt = NIODeadline.now()
    private var partialFrameSince: NIODeadline?
    private var lastFrameAt = NIODeadline.now()
    private var timer: RepeatedTask?

    init(broker: BrokerContext) {
        self.broker = broker
        self.logger = broker.logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let id = ObjectIdentifier(context.channel)
        let channel = context.channel
        let accepted = broker.connections.withLock { connections -> Bool in
            guard connections.count < broker.limits.maxConnections else { return false }
            connections[id] = channel
            return true
        }
        guard accepted else {
            broker.counters.rejectedConnections.add(1, ordering: .relaxed)
            logger.warning("refused a connection: \(broker.limits.maxConnections) connections are open (max_connections)")
            closing = true
            context.close(promise: nil)
            return
        }
        broker.counters.connections.add(1, ordering: .relaxed)
        broker.counters.connectionsTotal.add(1, ordering: .relaxed)
        connectedAt = .now()
        lastFrameAt = connectedAt
        let period = TimeAmount.milliseconds(Int64(max(50, broker.limits.frameTimeoutMilliseconds / 4)))
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let contextBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            loopBound.value.enforceTimeouts(context: contextBound.value)
        }
        if let provider = context.channel as? any SocketOptionProvider {
            // On the channel's own event loop this completes at once.
            provider.unsafeGetSocketOption(level: SocketOptionLevel(CKB_sol_socket()), name: SocketOptionName(CKB_so_peercred()))
                .assumeIsolated()
                .whenSuccess { (credentials: CKB_peer_credentials) in
                    self.peer = credentials
                    self.logger[metadataKey: "peer_uid"] = "\(credentials.uid)"
                }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let id = ObjectIdentifier(context.channel)
        timer?.cancel()
        timer = nil
        if var unsent = outbound {
            outbound = nil
            unsent.withUnsafeMutableReadableBytes { CKB_cleanse($0.baseAddress, $0.count) }
        }
        let removed = broker.connections.withLock { $0.removeValue(forKey: id) != nil }
        if removed { broker.counters.connections.subtract(1, ordering: .relaxed) }
        context.fireChannelInactive()
    }

    /// A client that pipelines requests but does not read its answers would make cached answers
    /// pile up in memory: stop reading from it until the socket drains.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        try? context.channel.syncOptions?.setOption(.autoRead, value: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutbound(context: context)
        context.fireChannelReadComplete()
    }

    /// Appends one answer to this read's outbound buffer.
    private func answer(context: ChannelHandlerContext, _ write: (inout ByteBuffer) -> Void) {
        var buffer = outbound ?? context.channel.allocator.buffer(capacity: 1024)
        outbound = nil  // so the write below does not copy
        write(&buffer)
        outbound = buffer
    }

    private func flushOutbound(context: ChannelHandlerContext) {
        guard let buffer = outbound else { return }
        outbound = nil
        let promise = context.eventLoop.makePromise(of: Void.self)
        Self.cleanseWhenWritten(promise.futureResult, buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error: \(error)")
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var bytes = unwrapInboundIn(data)
        var buffer: ByteBuffer
        if var pending = inbound {
            inbound = nil  // so the append below does not copy
            pending.writeBuffer(&bytes)
            buffer = pending
        } else {
            buffer = bytes
        }
        while !closing, let frame = decoder.next(from: &buffer) {
            lastFrameAt = .now()
            handle(frame, context: context)
        }
        if buffer.readableBytes > 0 || decoder.isMidFrame, !decoder.isBroken, !closing {
            if partialFrameSince == nil { partialFrameSince = .now() }
            if buffer.readableBytes > 0 {
                if buffer.readerIndex > 4096 { buffer.discardReadBytes() }
                inbound = buffer
            }
        } else {
            partialFrameSince = nil
        }
    }

    private func handle(_ frame: FrameDecoder.Frame, context: ChannelHandlerContext) {
        switch frame {
        case let .invalidLength(length, op, requestID):
            refuseMalformed(context: context, ProtocolError(
                requestID: requestID, op: op,
                message: "frame length \(length) is outside 1...\(ProtocolConstants.maximumFrameLength)"))
        case let .frame(payload):
            do {
                let request = try Request(payload: payload)
                broker.counters.requests.add(1, ordering: .relaxed)
                handle(request, context: context)
            } catch {
                refuseMalformed(context: context, error)
            }
        }
    }

    /// Closes connections that hold a slot without using it.
    private func enforceTimeouts(context: ChannelHandlerContext) {
        guard !closing else { return }
        let now = NIODeadline.now()
        let frameTimeout = TimeAmount.milliseconds(Int64(broker.limits.frameTimeoutMilliseconds))
        var reason: String?
        if let since = partialFrameSince, now - since > frameTimeout {
            reason = "a frame started \(broker.limits.frameTimeoutMilliseconds) ms ago is still incomplete (frame_timeout_ms)"
        } else if session == nil, now - connectedAt > frameTimeout {
            reason = "no HELLO within \(broker.limits.frameTimeoutMilliseconds) ms (frame_timeout_ms)"
        } else if broker.limits.idleTimeoutMilliseconds > 0, inFlight == 0,
                  now - lastFrameAt > .milliseconds(Int64(broker.limits.idleTimeoutMilliseconds)) {
            reason = "idle for \(broker.limits.idleTimeoutMilliseconds) ms (idle_timeout_ms)"
        }
        guard let reason else { return }
        broker.counters.timedOut.add(1, ordering: .relaxed)
        logger.notice("closing connection of uid \(peer.map { String($0.uid) } ?? "?"): \(reason)", metadata: ["event": "peer_malformed"])
        closing = true
        flushOutbound(context: context)
        context.close(promise: nil)
    }

    // MARK: Requests

    private func handle(_ request: Request, context: ChannelHandlerContext) {
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
            let store = session.store
            let maximumRotated = ProtocolConstants.maximumRotatedKeys
            if keyID == ProtocolConstants.allKeys, case let keys = store.summary().keyIDs, keys > maximumRotated {
                fail(context: context, op: op, requestID: id, status: .badRequest,
                     message: "instance \"\(store.name)\" has \(keys) keys and one ROTATE answers for at most \(maximumRotated); rotate them by id", close: false)
                return
            }
            answerLater(context: context, op: op, requestID: id) {
                try await RotateAnswer.rotate(store, keyID: keyID, op: op, requestID: id)
            }
        case let .admin(command):
            admin(context: context, session: session, op: op, requestID: id, command: command)
        case .status:
            let visible = session.isAdmin ? Array(broker.instances.keys) : [session.instance]
            let json = broker.statusDocument(visibleInstances: visible, boundInstance: session.instance)
            answer(context: context) { $0.writeResponse(op: op, requestID: id, status: .ok) { $0.writeProtocolString(json) } }
        }
    }

    /// ADMIN (0x06, an extension to v1): "rewrap MASTER_KEY" or "unlock TOKEN_CODE" on the bound
    /// instance; only for admins. Answers a JSON document.
    private func admin(context: ChannelHandlerContext, session: Session, op: UInt8, requestID: UInt32, command: String) {
        guard session.isAdmin else {
            broker.counters.denied.add(1, ordering: .relaxed)
            logger.warning("denied admin command from uid \(peer?.uid ?? 0): not in admins")
            fail(context: context, op: op, requestID: requestID, status: .denied,
                 message: "uid \(peer?.uid ?? 0) may not run admin commands; add the user to admins", close: false)
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
            logger.notice("uid \(peer?.uid ?? 0) asked to rewrap every key of instance \"\(instance)\" under \(target)")
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
            logger.notice("uid \(peer?.uid ?? 0) unlocks instance \"\(instance)\"")
            answerLater(context: context, op: op, requestID: requestID) {
                let message = try await store.unlock(tokenCode: code)
                return answer([("instance", .string(instance)), ("unlocked", .bool(true)), ("message", .string(message))])
            }
        default:
            fail(context: context, op: op, requestID: requestID, status: .badRequest,
                 message: "unknown admin command \"\(words.first ?? "")\"; expected \"rewrap MASTER_KEY\" or \"unlock TOKEN_CODE\"", close: false)
        }
    }

    private func hello(context: ChannelHandlerContext, requestID: UInt32, version: UInt16, instance: String, client: String) {
        let op = Opcode.hello.rawValue
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
        guard let peer else {
            fail(context: context, op: op, requestID: requestID, status: .internal,
                 message: "cannot read the peer's credentials (SO_PEERCRED)", close: true)
            return
        }
        let isAdmin = broker.admins.contains(uid: peer.uid, gid: peer.gid)
        guard let store = broker.instances[instance] else {
            broker.counters.denied.add(1, ordering: .relaxed)
            logger.warning("denied uid \(peer.uid) (pid \(peer.pid), client \"\(client)\"): instance \"\(instance)\" is not configured",
                           metadata: ["event": "peer_denied"])
            fail(context: context, op: op, requestID: requestID, status: .denied,
                 message: "instance \"\(instance)\" is not configured on this broker", close: true)
            return
        }
        let isClient = broker.clients[instance]?.contains(uid: peer.uid, gid: peer.gid) ?? false
        guard isAdmin || isClient else {
            broker.counters.denied.add(1, ordering: .relaxed)
            logger.warning("denied uid \(peer.uid) gid \(peer.gid) (pid \(peer.pid), client \"\(client)\") instance \"\(instance)\": not in clients or admins",
                           metadata: ["instance": "\(instance)", "event": "peer_denied"])
            fail(context: context, op: op, requestID: requestID, status: .denied,
                 message: "uid \(peer.uid) may not use instance \"\(instance)\"; add the user to clients of [instances.\(instance)]", close: true)
            return
        }
        session = Session(instance: instance, store: store, isAdmin: isAdmin)
        logger[metadataKey: "instance"] = "\(instance)"
        logger.debug("uid \(peer.uid) (pid \(peer.pid), client \"\(client)\") uses instance \"\(instance)\"\(isAdmin ? " as admin" : "")")
        answer(context: context) {
            $0.writeResponse(op: op, requestID: requestID, status: .ok) { buffer in
                buffer.writeInteger(ProtocolConstants.version)
                buffer.writeProtocolString(BrokerContext.serverName)
            }
        }
    }

    // MARK: Answers

    private static func writeKey(_ buffer: inout ByteBuffer, op: UInt8, requestID: UInt32, version: UInt32?, key: SecureBytes) {
        buffer.writeResponse(op: op, requestID: requestID, status: .ok) { buffer in
            if let version { buffer.writeInteger(version) }
            buffer.writeInteger(UInt16(key.count))
            key.withUnsafeBytes { _ = buffer.writeBytes($0) }
        }
    }

    private static func encodeKey(op: UInt8, requestID: UInt32, version: UInt32?, key: SecureBytes) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(16 + key.count)
        writeKey(&buffer, op: op, requestID: requestID, version: version, key: key)
        return buffer
    }

    /// Zeroes the copy of key bytes in a response once the socket has taken it.
    private static func cleanseWhenWritten(_ future: EventLoopFuture<Void>, _ buffer: ByteBuffer) {
        future.whenComplete { _ in
            buffer.withUnsafeReadableBytes { bytes in
                CKB_cleanse(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
            }
        }
    }

    /// Runs `answer` off the event loop and writes what it encodes, or the error it throws.
    private func answerLater(context: ChannelHandlerContext, op: UInt8, requestID: UInt32,
                             _ answer: @escaping @Sendable () async throws -> ByteBuffer) {
        guard inFlight < broker.limits.maxInFlightPerConnection else {
            logger.warning("closing connection of uid \(peer?.uid ?? 0): more than \(broker.limits.maxInFlightPerConnection) requests in flight (max_in_flight_per_connection)")
            fail(context: context, op: op, requestID: requestID, status: .unavailable,
                 message: "more than \(broker.limits.maxInFlightPerConnection) requests in flight on one connection", close: true)
            return
        }
        inFlight += 1
        broker.counters.inFlight.add(1, ordering: .relaxed)
        let channel = context.channel
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let broker = broker
        Task {
            let buffer = await ConnectionHandler.encodeAnswer(op: op, requestID: requestID, broker: broker, answer)
            let written = channel.eventLoop.makePromise(of: Void.self)
            ConnectionHandler.cleanseWhenWritten(written.futureResult, buffer)
            // In flight until the socket has taken the answer, so shutdown waits for it.
            written.futureResult.whenComplete { _ in
                loopBound.value.requestFinished()
                broker.counters.inFlight.subtract(1, ordering: .relaxed)
            }
            channel.writeAndFlush(buffer, promise: written)
        }
    }

    private func requestFinished() {
        inFlight -= 1
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
            buffer.writeFailure(op: op, requestID: requestID, status: status(for: failure.code), message: failure.message)
            return buffer
        }
    }

    static func status(for code: KeyStoreError.Code) -> ResponseStatus {
        switch code {
        case .notFound: .notFound
        case .unavailable: .unavailable
        case .denied: .denied
        case .corrupt, .internal: .internal
        }
    }

    private func fail(context: ChannelHandlerContext, op: UInt8, requestID: UInt32, status: ResponseStatus, message: String, close: Bool) {
        if status != .ok { broker.counters.errors.add(1, ordering: .relaxed) }
        answer(context: context) { $0.writeFailure(op: op, requestID: requestID, status: status, message: message) }
        if close {
            closing = true
            let channel = context.channel
            let closed = context.eventLoop.makePromise(of: Void.self)
            closed.futureResult.whenComplete { _ in channel.close(promise: nil) }
            if let buffer = outbound {
                outbound = nil
                Self.cleanseWhenWritten(closed.futureResult, buffer)
                context.writeAndFlush(wrapOutboundOut(buffer), promise: closed)
            }
        }
    }

    private func refuseMalformed(context: ChannelHandlerContext, _ error: ProtocolError) {
        broker.counters.malformed.add(1, ordering: .relaxed)
        logger.warning("closing connection of uid \(peer.map { String($0.uid) } ?? "?"): malformed request: \(error.message)",
                       metadata: ["event": "peer_malformed"])
        if let requestID = error.requestID {
            fail(context: context, op: error.op ?? 0, requestID: requestID, status: error.status, message: error.message, close: true)
        } else {
            closing = true
            flushOutbound(context: context)
            context.close(promise: nil)
        }
    }
}
