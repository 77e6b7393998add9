import BrokerProtocol
import NIOCore

// libFuzzer target for the bytes a hostile peer controls: FrameDecoder, Request(payload:) and, for
// clients, Response(payload:). The input is one inbound byte stream. Crashing is not the only
// failure: every check below traps (libFuzzer reports a trap as a crash and saves the input).
//
//     input ──▶ FrameDecoder (whole) ───────────────┐
//           ──▶ FrameDecoder (in chunks, as the     ├─ same frames, each one the exact bytes at its
//               connection handler feeds it)        ┘  offset, never past the end of the input
//     each payload ──▶ Request(payload:)  ──▶ re-encodes to the same frame bytes, or an error that
//                  ──▶ Response(payload:) ──▶ carries the request id exactly when it is readable
//                      (STATUS and ADMIN documents are read too: a document or an error, never a crash)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let (whole, wholePartial) = decodeWhole(input)
    let (chunked, chunkedPartial) = decodeInChunks(input)
    check(whole == chunked, "splitting the stream changed the frames: \(whole.count) vs \(chunked.count)")
    check(wholePartial == chunkedPartial, "splitting the stream changed whether a frame is pending")
    for case let .frame(payload) in whole {
        checkRequest(Array(payload.readableBytesView))
        checkResponse(Array(payload.readableBytesView))
    }
    return 0
}

private func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}

private func u32(_ bytes: [UInt8], at i: Int) -> UInt32 {
    bytes[i..<i + 4].reduce(0) { $0 << 8 | UInt32($1) }
}

/// Decodes the input in one buffer and checks every frame against the bytes at its offset.
/// Returns the frames and whether a partial frame is pending.
private func decodeWhole(_ input: [UInt8]) -> ([FrameDecoder.Frame], Bool) {
    var decoder = FrameDecoder()
    var buffer = ByteBuffer(bytes: input)
    var frames: [FrameDecoder.Frame] = []
    var offset = 0
    while let frame = decoder.next(from: &buffer) {
        check(buffer.readerIndex <= input.count && buffer.writerIndex == input.count, "reader index past the input")
        check(offset + 4 <= input.count, "frame reported without a whole length prefix at \(offset)")
        let length = u32(input, at: offset)
        switch frame {
        case let .frame(payload):
            check(length >= 1 && Int(length) <= ProtocolConstants.maximumFrameLength, "accepted length \(length)")
            let end = offset + 4 + Int(length)
            check(end <= input.count, "frame of \(length) bytes at \(offset) runs past the input (\(input.count))")
            check(Array(payload.readableBytesView) == Array(input[offset + 4..<end]), "payload at \(offset) is not the input's bytes")
            check(buffer.readerIndex == end, "consumed \(buffer.readerIndex), frame ends at \(end)")
            check(!decoder.isMidFrame, "mid-frame right after a whole frame")
            offset = end
        case let .invalidLength(reported, op, requestID):
            check(reported == length, "reported length \(reported), prefix says \(length)")
            check(length == 0 || Int(length) > ProtocolConstants.maximumFrameLength, "refused a valid length \(length)")
            if length == 0 {
                check(op == nil && requestID == nil, "length 0 cannot have a request header")
            } else {
                check(offset + 9 <= input.count, "over-long length reported before its request header arrived")
                check(op == input[offset + 4] && requestID == u32(input, at: offset + 5), "wrong op/request id for a bad length")
            }
            check(decoder.isBroken, "decoder not broken after a bad length")
            check(buffer.readableBytes == 0, "bytes left after a bad length")
            check(decoder.next(from: &buffer) == nil, "a frame after a bad length")
            frames.append(frame)
            return (frames, false)
        }
        frames.append(frame)
    }
    // Whatever is left must be a frame still arriving, never one the decoder could have returned.
    check(!decoder.isBroken, "broken without reporting a bad length")
    let rest = input.count - offset
    // The connection handler times out a partial frame by this test: it must be exact.
    check((buffer.readableBytes > 0 || decoder.isMidFrame) == (rest > 0), "partial frame of \(rest) bytes misreported")
    if rest >= 4 {
        let length = Int(u32(input, at: offset))
        check(length != 0, "length 0 not reported")
        if length <= ProtocolConstants.maximumFrameLength {
            check(rest < 4 + length, "complete frame of \(length) bytes at \(offset) not returned")
        } else {
            check(rest < 9, "over-long length at \(offset) not reported with its request header")
        }
    }
    return (frames, rest > 0)
}

/// Feeds the same input in chunks into one growing buffer, as ConnectionHandler does (including
/// discarding read bytes), so state kept across reads is exercised. Chunk sizes come from the input.
private func decodeInChunks(_ input: [UInt8]) -> ([FrameDecoder.Frame], Bool) {
    var decoder = FrameDecoder()
    var pending = ByteBuffer()
    var frames: [FrameDecoder.Frame] = []
    var offset = 0
    var step = 0
    while offset < input.count {
        let size = 1 + Int(input[step % input.count] ^ UInt8(truncatingIfNeeded: step)) % 11
        step += 1
        let end = min(input.count, offset + size)
        pending.writeBytes(input[offset..<end])
        offset = end
        while let frame = decoder.next(from: &pending) { frames.append(frame) }
        if step % 3 == 0 { pending.discardReadBytes() }
    }
    return (frames, !decoder.isBroken && (pending.readableBytes > 0 || decoder.isMidFrame))
}

private func checkRequest(_ payload: [UInt8]) {
    do {
        let request = try Request(payload: ByteBuffer(bytes: payload))
        check(payload.count >= 5, "request decoded from \(payload.count) bytes")
        check(request.op.rawValue == payload[0] && request.requestID == u32(payload, at: 1), "op/request id differ from the bytes")
        var encoded = ByteBuffer()
        request.encode(into: &encoded)
        let n = UInt32(payload.count)
        let expected = [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: n >> $0) } + payload
        check(Array(encoded.readableBytesView) == expected, "request does not re-encode to its bytes: \(request)")
    } catch {
        check(!error.message.isEmpty, "error without a message")
        check(error.status == .badRequest || error.status == .unsupported, "request error with status \(error.status)")
        if payload.count >= 5 {
            check(error.requestID == u32(payload, at: 1) && error.op == payload[0], "error lost the readable request id: \(error)")
            check((error.status == .unsupported) == (Opcode(rawValue: payload[0]) == nil), "UNSUPPORTED must mean an unknown op")
        } else {
            check(error.requestID == nil && error.op == nil, "error invented a request id from \(payload.count) bytes")
        }
    }
}

private func checkResponse(_ payload: [UInt8]) {
    do {
        let response = try Response(payload: ByteBuffer(bytes: payload))
        check(payload.count >= 6, "response decoded from \(payload.count) bytes")
        var encoded = ByteBuffer()
        encoded.writeResponse(response)
        check(Array(encoded.readableBytesView.dropFirst(4)) == payload, "response does not re-encode to its bytes: \(response)")
        // keybrokerctl reads these documents from the broker: any text is an error or a document.
        switch response.body {
        case let .status(json): _ = try? StatusDocument(json: json)
        case let .admin(json):
            _ = try? RewrapAnswer(json: json)
            _ = try? RewrapIntoAnswer(json: json)
            _ = try? UnlockAnswer(json: json)
        default: break
        }
    } catch {
        check(!error.message.isEmpty, "error without a message")
        if payload.count >= 6 {
            check(error.requestID == u32(payload, at: 1) && error.op == payload[0], "response error lost the request id: \(error)")
        } else {
            check(error.requestID == nil, "response error invented a request id from \(payload.count) bytes")
        }
    }
}
