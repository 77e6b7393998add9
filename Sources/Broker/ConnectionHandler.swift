import BrokerProtocol
import CKeybrokerCrypto
import CKeybrokerSystem
import Glibc
import KeyStore
import Logging
import NIOCore
import SystemSupport

/// One admitted client connection (AcceptLoop has checked the peer and its budgets), the transport
/// half: framing, timeouts and the output budget. The session (HELLO) is in
/// ConnectionHandler+Session.swift, the requests in +Requests and +Admin, the writes in +Writing.
///
/// Cached keys and STATUS are answered inline on the event loop; everything that may wait (file
/// reads, KMS) runs in a task whose answer is written whenever it is ready, so responses may come
/// out of order. Every answer, inline or not, counts against `max_output_bytes_per_connection`
/// until the socket has taken it: past that, the connection is no longer read (nor its buffered
/// frames decoded) until the peer reads, and a peer that does not read for `frame_timeout_ms` is
/// closed. The decoder runs here rather than behind a ByteToMessageHandler because the handler must
/// know when a frame has started but not finished: a peer that stalls mid-frame, or never says
/// HELLO, is disconnected after `frame_timeout_ms`, and one that stays idle after `idle_timeout_ms`.
/// Time is the event loop's (`eventLoop.now`), so the unit tests drive every timeout through an
/// EmbeddedEventLoop's `advanceTime`.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Session {
        let instance: String
        let store: InstanceKeyStore
        let isAdmin: Bool
    }

    let broker: BrokerContext
    /// Read at accept (SO_PEERCRED), before the peer's first byte.
    let peer: CKB_peer_credentials
    let admission: Admission
    /// The connection's socket, written directly while NIO holds none of its answers (so no
    /// outbound handler sees those writes); -1 for answers through the channel only.
    let socketDescriptor: CInt
    var session: Session?
    var logger: Logger
    var inFlight = 0
    private(set) var closing = false
    /// Answers written on the event loop during one read, sent together at the end of the read
    /// with one write and one zeroing of the key bytes they contain.
    var outbound: ByteBuffer?
    /// The last answer buffer the socket took whole, zeroed and empty: the next read's answers
    /// are written into it instead of a new allocation.
    var spare: ByteBuffer?
    /// Bytes handed to the channel that the socket has not taken yet.
    var unsentBytes = 0
    /// Set while the output budget is spent: nothing is read or decoded.
    private var pausedSince: NIODeadline?
    private var closingSince: NIODeadline?
    private var decoder = FrameDecoder()
    private var inbound: ByteBuffer?
    private var connectedAt = NIODeadline.uptimeNanoseconds(0)
    private var partialFrameSince: NIODeadline?
    private var lastFrameAt = NIODeadline.uptimeNanoseconds(0)
    private var timer: RepeatedTask?

    init(broker: BrokerContext, peer: CKB_peer_credentials, admission: Admission, socket: CInt = -1) {
        self.broker = broker
        self.peer = peer
        self.admission = admission
        self.socketDescriptor = socket
        self.logger = broker.logger
    }

    var peerUID: UInt32 { peer.uid }

    var pendingOutput: Int { unsentBytes + (outbound?.readableBytes ?? 0) }

    // MARK: Accept

    /// The connection was admitted by AcceptLoop (peer listed, within its budgets).
    func channelActive(context: ChannelHandlerContext) {
        connectedAt = context.eventLoop.now
        lastFrameAt = connectedAt
        logger[metadataKey: "peer_uid"] = "\(peer.uid)"
        broker.registry.attach(context.channel)
        broker.counters.connections.add(1, ordering: .relaxed)
        broker.counters.connectionsTotal.add(1, ordering: .relaxed)
        let period = TimeAmount.milliseconds(Int64(max(50, broker.limits.frameTimeoutMilliseconds / 4)))
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let contextBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            loopBound.value.enforceTimeouts(context: contextBound.value)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if var unsent = outbound {
            outbound = nil
            unsent.withUnsafeMutableReadableBytes { CKB_cleanse($0.baseAddress, $0.count) }
        }
        broker.registry.detach(context.channel)
        broker.counters.connections.subtract(1, ordering: .relaxed)
        admission.release()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error: \(error)")
        context.close(promise: nil)
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var bytes = unwrapInboundIn(data)
        if var pending = inbound {
            inbound = nil  // so the append below does not copy
            pending.writeBuffer(&bytes)
            inbound = pending
        } else {
            inbound = bytes
        }
        decodeInbound(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutbound(context: context)
        context.fireChannelReadComplete()
    }

    /// Decodes and handles the buffered frames until none is left or the output budget is spent.
    private func decodeInbound(context: ChannelHandlerContext) {
        guard var buffer = inbound else { return }
        inbound = nil
        let maxOutput = broker.limits.maxOutputBytesPerConnection
        // One clock read per read, not per frame: the idle timeout needs no finer grain.
        var sawFrame = false
        while !closing, pausedSince == nil, let decoded = decoder.nextRequest(from: &buffer) {
            if !sawFrame {
                sawFrame = true
                lastFrameAt = context.eventLoop.now
            }
            handle(decoded, context: context)
            if !closing, pausedSince == nil, pendingOutput >= maxOutput {
                // Sent first: if the socket takes it all, nothing is left whose write would resume.
                flushOutbound(context: context)
                if !closing, pendingOutput > maxOutput / 2 { pause(context: context) }
            }
        }
        guard !closing else { return }
        if pausedSince != nil {
            partialFrameSince = nil
        } else if buffer.readableBytes > 0 || decoder.isMidFrame, !decoder.isBroken {
            if partialFrameSince == nil { partialFrameSince = context.eventLoop.now }
        } else {
            partialFrameSince = nil
        }
        if buffer.readableBytes > 0 {
            if buffer.readerIndex > 4096 { buffer.discardReadBytes() }
            inbound = buffer
        }
    }

    private func handle(_ decoded: FrameDecoder.DecodedRequest, context: ChannelHandlerContext) {
        switch decoded {
        case let .invalidLength(length, op, requestID):
            refuseMalformed(context: context, ProtocolError(
                requestID: requestID, op: op,
                message: "frame length \(length) is outside 1...\(ProtocolConstants.maximumFrameLength)"))
        case let .malformed(error):
            refuseMalformed(context: context, error)
        case let .request(request):
            broker.counters.requests.add(1, ordering: .relaxed)
            handle(request, context: context)
        }
    }

    // MARK: Output budget

    /// The peer has not taken what it was sent: stop reading and decoding until it does.
    private func pause(context: ChannelHandlerContext) {
        pausedSince = context.eventLoop.now
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
    }

    private func resume(context: ChannelHandlerContext) {
        pausedSince = nil
        decodeInbound(context: context)
        flushOutbound(context: context)
        if pausedSince == nil && !closing {
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    /// A write the socket has taken (or that failed because the connection closed).
    func written(_ byteCount: Int, context: ChannelHandlerContext) {
        unsentBytes -= byteCount
        if pausedSince != nil, !closing, context.channel.isActive, pendingOutput <= broker.limits.maxOutputBytesPerConnection / 2 {
            resume(context: context)
        }
    }

    // MARK: Closing

    /// Closes once what is queued has been written (bounded by frame_timeout_ms in enforceTimeouts).
    func closeAfterWriting(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        closingSince = context.eventLoop.now
        let channel = context.channel
        flushOutbound(context: context) {
            guard self.unsentBytes > 0 else { return channel.close(promise: nil) }
            // NIO still holds answers: an empty write behind them completes after they do.
            let promise = channel.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { _ in channel.close(promise: nil) }
            context.writeAndFlush(self.wrapOutboundOut(channel.allocator.buffer(capacity: 0)), promise: promise)
        }
    }

    func closeNow(context: ChannelHandlerContext) {
        closing = true
        closingSince = context.eventLoop.now
        context.close(promise: nil)
    }

    // MARK: Timeouts

    /// Closes connections that hold a slot without using it.
    private func enforceTimeouts(context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        let frameTimeoutMilliseconds = broker.limits.frameTimeoutMilliseconds
        let frameTimeout = TimeAmount.milliseconds(Int64(frameTimeoutMilliseconds))
        if closing {
            // A peer that does not read the last answers is not waited for longer than that.
            if let since = closingSince, now - since > frameTimeout { context.close(promise: nil) }
            return
        }
        let reason: String
        let kind: PeerEventLog.Kind
        if let since = pausedSince, now - since > frameTimeout {
            reason = "it has not read its answers for \(frameTimeoutMilliseconds) ms, \(pendingOutput) bytes waiting (frame_timeout_ms, max_output_bytes_per_connection)"
            kind = .unread
        } else if let since = partialFrameSince, now - since > frameTimeout {
            reason = "a frame started \(frameTimeoutMilliseconds) ms ago is still incomplete (frame_timeout_ms)"
            kind = .stalledFrame
        } else if session == nil, now - connectedAt > frameTimeout {
            reason = "no HELLO within \(frameTimeoutMilliseconds) ms (frame_timeout_ms)"
            kind = .noHello
        } else if broker.limits.idleTimeoutMilliseconds > 0, inFlight == 0, pendingOutput == 0,
                  now - lastFrameAt > .milliseconds(Int64(broker.limits.idleTimeoutMilliseconds)) {
            reason = "idle for \(broker.limits.idleTimeoutMilliseconds) ms (idle_timeout_ms)"
            kind = .idle
        } else {
            return
        }
        broker.counters.timedOut.add(1, ordering: .relaxed)
        let uid = peerUID
        broker.peerLog.report(kind, uid: uid, level: .notice, metadata: ["peer_uid": "\(uid)", "event": "peer_malformed"]) {
            "closing connection of uid \(uid): \(reason)"
        }
        if kind == .unread {
            closeNow(context: context)
        } else {
            closeAfterWriting(context: context)
        }
    }

    // MARK: Failures

    func fail(context: ChannelHandlerContext, op: Opcode, requestID: UInt32, status: ResponseStatus, message: String, close: Bool) {
        fail(context: context, op: op.rawValue, requestID: requestID, status: status, message: message, close: close)
    }

    /// `op` is a byte: an unknown op is echoed too.
    private func fail(context: ChannelHandlerContext, op: UInt8, requestID: UInt32, status: ResponseStatus, message: String, close: Bool) {
        broker.counters.errors.add(1, ordering: .relaxed)
        MetricsRegistry.shared.countAnswer(op: op, status: status.rawValue)
        answer(context: context) { $0.writeFailure(op: op, requestID: requestID, status: status, message: message) }
        if close { closeAfterWriting(context: context) }
    }

    private func refuseMalformed(context: ChannelHandlerContext, _ error: ProtocolError) {
        if !error.closesConnection, let requestID = error.requestID {
            // A sound frame asking for something that does not exist (an unknown ADMIN command).
            fail(context: context, op: error.op ?? 0, requestID: requestID, status: error.status, message: error.message, close: false)
            return
        }
        broker.counters.malformed.add(1, ordering: .relaxed)
        let uid = peerUID
        broker.peerLog.report(.malformed, uid: uid, level: .warning, metadata: ["peer_uid": "\(uid)", "event": "peer_malformed"]) {
            "closing connection of uid \(uid): malformed request: \(error.message)"
        }
        if let requestID = error.requestID {
            fail(context: context, op: error.op ?? 0, requestID: requestID, status: error.status, message: error.message, close: true)
        } else {
            closeAfterWriting(context: context)
        }
    }
}
