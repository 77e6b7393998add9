import NIOCore

/// Splits a byte stream into frames. The server's connection handler drives it directly (it
/// needs to see partial frames to time them out); clients can do the same.
///
///     ┌──────────────┬──────────────────────┐
///     │ length: u32  │ payload[length]      │   1 <= length <= 65536
///     └──────────────┴──────────────────────┘
///        bytes in ──▶ FrameDecoder ──▶ .frame(payload)
///
/// A length outside the limits cannot be resynchronised: the decoder reports it once, as
/// `.invalidLength` (with the request id when the five bytes after the prefix have arrived, so the
/// peer can be told BAD_REQUEST) and then discards everything that follows.
public struct FrameDecoder: Sendable {
    public enum Frame: Sendable, Equatable {
        case frame(ByteBuffer)
        case invalidLength(length: UInt32, op: UInt8?, requestID: UInt32?)
    }

    private enum State {
        case waitingForHeader
        case waitingForFrame(length: Int)
        /// An over-long length: wait for op and request id so the answer can name the request.
        case waitingForRequestHeader(length: UInt32)
        case broken
    }

    private var state: State = .waitingForHeader
    public let maximumFrameLength: Int

    public init(maximumFrameLength: Int = ProtocolConstants.maximumFrameLength) {
        self.maximumFrameLength = maximumFrameLength
    }

    /// True between the first byte of a frame and its last (the length prefix may be consumed
    /// already while the payload has not arrived).
    public var isMidFrame: Bool {
        switch state {
        case .waitingForHeader, .broken: false
        case .waitingForFrame, .waitingForRequestHeader: true
        }
    }

    /// True once a bad length was seen; the connection should be closed.
    public var isBroken: Bool {
        if case .broken = state { return true }
        return false
    }

    /// What `nextRequest(from:)` found.
    public enum DecodedRequest: Sendable, Equatable {
        case request(Request)
        /// A sound frame whose payload is not a request (`Request(payload:)`'s error).
        case malformed(ProtocolError)
        case invalidLength(length: UInt32, op: UInt8?, requestID: UInt32?)
    }

    /// The next complete request in `buffer`, consuming it, or nil when more bytes are needed.
    /// The same as `next(from:)` followed by `Request(payload:)` (the general decoder, which the
    /// tests compare it with), but a whole LATEST_KEY or GET_KEY frame (the cached path, nearly
    /// every request) is decoded where it lies, without a slice.
    public mutating func nextRequest(from buffer: inout ByteBuffer) -> DecodedRequest? {
        if case .waitingForHeader = state,
           let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
           length <= Request.longestCachedPathPayload, buffer.readableBytes >= 4 + Int(length),
           let request = Request.cachedPathRequest(in: buffer, offset: buffer.readerIndex + 4, length: Int(length)) {
            buffer.moveReaderIndex(forwardBy: 4 + Int(length))
            return .request(request)
        }
        switch next(from: &buffer) {
        case nil:
            return nil
        case let .invalidLength(length, op, requestID):
            return .invalidLength(length: length, op: op, requestID: requestID)
        case let .frame(payload):
            do {
                return .request(try Request(payload: payload))
            } catch {
                return .malformed(error)
            }
        }
    }

    /// The next complete frame in `buffer`, consuming it, or nil when more bytes are needed.
    public mutating func next(from buffer: inout ByteBuffer) -> Frame? {
        switch state {
        case .waitingForHeader:
            guard let length = buffer.readInteger(as: UInt32.self) else { return nil }
            if length == 0 {
                state = .broken
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return .invalidLength(length: 0, op: nil, requestID: nil)
            }
            if Int(length) > maximumFrameLength {
                state = .waitingForRequestHeader(length: length)
                return next(from: &buffer)
            }
            state = .waitingForFrame(length: Int(length))
            return next(from: &buffer)
        case let .waitingForFrame(length):
            guard let payload = buffer.readSlice(length: length) else { return nil }
            state = .waitingForHeader
            return .frame(payload)
        case let .waitingForRequestHeader(length):
            guard buffer.readableBytes >= ProtocolConstants.requestHeaderLength,
                  let op = buffer.readInteger(as: UInt8.self), let requestID = buffer.readInteger(as: UInt32.self)
            else { return nil }
            state = .broken
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .invalidLength(length: length, op: op, requestID: requestID)
        case .broken:
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return nil
        }
    }
}
