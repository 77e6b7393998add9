import NIOCore

/// A decoded response: `op:u8 request_id:u32 status:u8 body`, read by clients (keybrokerctl, the
/// tests). Key bytes stay in the received frame (`key` is a slice of it, not a copy) so a client
/// can move them into locked memory and zero the frame.
public struct Response: Sendable, Equatable {
    public enum Body: Sendable, Equatable {
        case hello(protocolVersion: UInt16, server: String)
        case latestKey(version: UInt32, key: ByteBuffer)
        case getKey(key: ByteBuffer)
        case rotate([RotatedKey])
        /// Status PARTIAL: the keys rotated, and why the others were not.
        case partialRotation(RotationReport)
        /// The text of a `StatusDocument`.
        case status(json: String)
        /// The text of the command's answer document (`RewrapAnswer`, `RewrapIntoAnswer`, `UnlockAnswer`).
        case admin(json: String)
        case info(InstanceInfo)
        /// Status REFUSED: the key service's error code and key after the message.
        case refusal(KeyServiceRefusal)
        case failure(message: String)
    }

    public var op: Opcode
    public var requestID: UInt32
    public var status: ResponseStatus
    public var body: Body

    /// The sentence of a non-OK answer (every non-OK body starts with it).
    public var message: String? {
        switch body {
        case let .failure(message): message
        case let .refusal(refusal): refusal.message
        case let .partialRotation(report): report.message
        default: nil
        }
    }

    public init(op: Opcode, requestID: UInt32, status: ResponseStatus, body: Body) {
        self.op = op
        self.requestID = requestID
        self.status = status
        self.body = body
    }

    public init(payload: ByteBuffer) throws(ProtocolError) {
        var buffer = payload
        guard let opByte = buffer.readInteger(as: UInt8.self),
              let requestID = buffer.readInteger(as: UInt32.self),
              let statusByte = buffer.readInteger(as: UInt8.self)
        else { throw ProtocolError(requestID: nil, op: nil, message: "response shorter than its 6-byte header") }
        func fail(_ what: String) -> ProtocolError { ProtocolError(requestID: requestID, op: opByte, message: what) }
        guard let op = Opcode(rawValue: opByte) else { throw fail("response to unknown op \(opByte)") }
        guard let status = ResponseStatus(rawValue: statusByte) else { throw fail("unknown status \(statusByte)") }
        let body: Body
        if status == .partial, op == .rotate {
            body = .partialRotation(try RotationReport(reading: &buffer, requestID: requestID, op: opByte))
        } else if status == .refused {
            body = .refusal(try KeyServiceRefusal(reading: &buffer, requestID: requestID, op: opByte))
        } else if status != .ok {
            body = .failure(message: try buffer.readProtocolString(field: "message", requestID: requestID, op: opByte))
        } else {
            switch op {
            case .hello:
                guard let version = buffer.readInteger(as: UInt16.self) else { throw fail("HELLO response too short") }
                body = .hello(protocolVersion: version, server: try buffer.readProtocolString(field: "server", requestID: requestID, op: opByte))
            case .latestKey:
                guard let version = buffer.readInteger(as: UInt32.self), let length = buffer.readInteger(as: UInt16.self),
                      let key = buffer.readSlice(length: Int(length))
                else { throw fail("LATEST_KEY response too short") }
                body = .latestKey(version: version, key: key)
            case .getKey:
                guard let length = buffer.readInteger(as: UInt16.self), let key = buffer.readSlice(length: Int(length))
                else { throw fail("GET_KEY response too short") }
                body = .getKey(key: key)
            case .rotate:
                guard let count = buffer.readInteger(as: UInt32.self), Int(count) * 8 == buffer.readableBytes
                else { throw fail("ROTATE response has a wrong count") }
                body = .rotate(try RotatedKey.read(count: count, from: &buffer, requestID: requestID, op: opByte))
            case .status:
                body = .status(json: try buffer.readProtocolString(field: "json", requestID: requestID, op: opByte))
            case .admin:
                body = .admin(json: try buffer.readProtocolString(field: "json", requestID: requestID, op: opByte))
            case .info:
                body = .info(try InstanceInfo(reading: &buffer, requestID: requestID, op: opByte))
            }
        }
        if buffer.readableBytes != 0 { throw fail("\(buffer.readableBytes) unexpected bytes after the response body") }
        self.init(op: op, requestID: requestID, status: status, body: body)
    }
}

/// ROTATE's answer lists key versions; the name reads better at the call site.
public typealias RotatedKey = KeyRef
