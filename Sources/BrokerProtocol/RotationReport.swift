import NIOCore

/// The key versions a ROTATE answer lists: `count:u32 count × (key_id:u32, new_version:u32)`.
extension KeyRef {
    /// `count × (key_id:u32, new_version:u32)`, the count written first.
    static func write(_ keys: [RotatedKey], to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(keys.count))
        for key in keys {
            buffer.writeInteger(key.keyID)
            buffer.writeInteger(key.version)
        }
    }

    static func read(count: UInt32, from buffer: inout ByteBuffer, requestID: UInt32, op: UInt8) throws(ProtocolError) -> [RotatedKey] {
        guard Int(count) <= buffer.readableBytes / 8 else {
            throw ProtocolError(requestID: requestID, op: op, message: "ROTATE response too short for \(count) keys")
        }
        return (0..<count).map { _ in RotatedKey(keyID: buffer.readInteger()!, version: buffer.readInteger()!) }
    }
}

/// The body of a ROTATE answer with status PARTIAL (7): some keys were rotated, some not.
///
///     message:string  count:u32  count × (key_id:u32, new_version:u32)  failed:u32  failed × (key_id:u32, status:u8)
///
/// It starts with `message:string` like every non-OK body, so a client that does not know PARTIAL
/// reads it as a failure with that sentence.
public struct RotationReport: Sendable, Equatable {
    public struct Failure: Sendable, Equatable {
        public var keyID: UInt32
        public var status: ResponseStatus
        public init(keyID: UInt32, status: ResponseStatus) {
            self.keyID = keyID
            self.status = status
        }
    }

    public var message: String
    public var rotated: [RotatedKey]
    public var failed: [Failure]

    public init(message: String, rotated: [RotatedKey], failed: [Failure]) {
        self.message = message
        self.rotated = rotated
        self.failed = failed
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeProtocolString(message, limit: ProtocolConstants.maximumPartialMessageLength)
        RotatedKey.write(rotated, to: &buffer)
        buffer.writeInteger(UInt32(failed.count))
        for failure in failed {
            buffer.writeInteger(failure.keyID)
            buffer.writeInteger(failure.status.rawValue)
        }
    }

    init(reading buffer: inout ByteBuffer, requestID: UInt32, op: UInt8) throws(ProtocolError) {
        func fail(_ what: String) -> ProtocolError { ProtocolError(requestID: requestID, op: op, message: what) }
        message = try buffer.readProtocolString(field: "message", requestID: requestID, op: op)
        guard let count = buffer.readInteger(as: UInt32.self) else { throw fail("PARTIAL response has no count") }
        rotated = try RotatedKey.read(count: count, from: &buffer, requestID: requestID, op: op)
        guard let failedCount = buffer.readInteger(as: UInt32.self), Int(failedCount) * 5 == buffer.readableBytes
        else { throw fail("PARTIAL response has a wrong count of failed keys") }
        var failed: [Failure] = []
        for _ in 0..<failedCount {
            let id: UInt32 = buffer.readInteger()!
            let raw: UInt8 = buffer.readInteger()!
            guard let status = ResponseStatus(rawValue: raw), status != .ok else { throw fail("PARTIAL response names status \(raw) for key \(id)") }
            failed.append(Failure(keyID: id, status: status))
        }
        self.failed = failed
    }
}
