import CKeybrokerCrypto
import CKeybrokerSystem
import Glibc
import NIOCore
import SystemSupport

/// The transport's write half: answers appended to the read's outbound buffer, sent on the socket
/// past NIO while NIO holds none of them, handed to NIO otherwise, and zeroed once sent.
extension ConnectionHandler {
    /// Room for the longest key answer (a 32-byte key takes 44 bytes).
    private static let keyAnswerRoom = 128

    /// Appends one answer with no key bytes (taken out while written, so the write does not copy
    /// it), after sending the key answers before it: a buffer grows with realloc, which may copy
    /// them and free the old block unzeroed.
    func answer(context: ChannelHandlerContext, _ write: (inout ByteBuffer) -> Void) {
        if let pending = outbound, pending.readableBytes > 0 { flushOutbound(context: context) }
        var buffer = outbound.take() ?? spare.take() ?? context.channel.allocator.buffer(capacity: 1024)
        write(&buffer)
        outbound = buffer
    }

    /// Appends one key answer, or nothing if `write` says the key is not in memory. The buffer
    /// never grows inside `write`: it grows here, by a copy and a zeroing of the old bytes.
    func answerKey(context: ChannelHandlerContext, _ write: (inout ByteBuffer) -> Bool) -> Bool {
        var buffer = outbound.take() ?? spare.take() ?? context.channel.allocator.buffer(capacity: 1024)
        if buffer.writableBytes < Self.keyAnswerRoom {
            var larger = context.channel.allocator.buffer(capacity: max(2 * buffer.capacity, buffer.readableBytes + Self.keyAnswerRoom))
            larger.writeImmutableBuffer(buffer)
            buffer.withUnsafeReadableBytes { CKB_cleanse(UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) }
            buffer = larger
        }
        let written = write(&buffer)
        outbound = buffer
        return written
    }

    func flushOutbound(context: ChannelHandlerContext, then: (() -> Void)? = nil) {
        guard let buffer = outbound.take() else {
            then?()
            return
        }
        write(consume buffer, context: context, then: then)
    }

    /// Writes `buffer`, then zeroes it (answers carry key bytes) and runs `then`.
    ///
    /// While NIO holds none of this connection's answers, the answer goes to the socket with one
    /// send(2) of our own, and the emptied buffer is kept for the next read's answers. NIO's write
    /// path (the outbound hop, its pending-writes queue, flush) and a buffer allocated per read
    /// were a tenth of the daemon's CPU per request with one request in flight per client
    /// (12.05 -> 10.85 µs in one A/B of 9 alternations) for a write the socket nearly always takes
    /// whole. Answers keep their order because nothing goes past NIO while its queue holds one, and
    /// only this function writes to the channel. What the socket does not take goes to NIO. There
    /// it counts against the output budget until an empty write queued behind it completes (a
    /// channel completes its writes in order), and is zeroed then. No promise is made for an answer
    /// NIO wrote at once (a promise per write was 6 % of the daemon's time at depth 1).
    func write(_ buffer: consuming ByteBuffer, context: ChannelHandlerContext, then: (() -> Void)? = nil) {
        var buffer = buffer
        if buffer.readableBytes == 0 {
            keepAsSpare(&buffer)
            then?()
            return
        }
        if socketDescriptor >= 0, unsentBytes == 0, context.channel.isActive {
            let socket = socketDescriptor
            // Zeroed in place even when another reference shares the storage (a task's answer is
            // still captured by the closure that delivers it): a mutable view would copy first.
            let sent = buffer.withUnsafeReadableBytes { bytes in
                let sent = CKB_send_nonblocking(socket, bytes.baseAddress, bytes.count)
                CKB_cleanse(UnsafeMutableRawPointer(mutating: bytes.baseAddress), sent < 0 ? 0 : Int(sent))
                return sent
            }
            if sent == buffer.readableBytes {
                keepAsSpare(&buffer)
                then?()
                return
            }
            if sent >= 0 {
                buffer.moveReaderIndex(forwardBy: Int(sent))
            } else if sent != -Int(EAGAIN) {
                buffer.withUnsafeReadableBytes { CKB_cleanse(UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) }
                logger.debug("connection error: cannot send: \(errnoText(Int32(-sent)))")
                closeNow(context: context)
                then?()
                return
            }
        }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        let sent = buffer.modifyIfUniquelyOwned { taken in
            taken.withUnsafeMutableReadableBytes { CKB_cleanse($0.baseAddress, $0.count) }
            return true
        } ?? false
        if sent {
            then?()
            return
        }
        let queued = buffer
        let size = queued.readableBytes
        unsentBytes += size
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenComplete { _ in
            queued.withUnsafeReadableBytes { bytes in
                CKB_cleanse(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
            }
            self.written(size, context: context)
            then?()
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
    }

    /// The read's own buffer, sent and zeroed, for the next read's answers. A smaller one (a task's
    /// answer) would grow at the next read's second answer.
    private func keepAsSpare(_ buffer: inout ByteBuffer) {
        guard buffer.capacity >= 1024, buffer.capacity <= 16384 else { return }
        buffer.clear()
        spare = buffer
    }
}
