import NIOCore

/// One encoder per kind of response, used by the daemon for every answer it sends and by
/// `writeResponse(_:)` for clients and tests, so each body has exactly one writer. Key bytes are
/// copied once, from the caller's (locked) memory into the frame.
///
///     ┌─────────────┬───────┬─────────────────┬───────────┬──────┐
///     │ length: u32 │ op:u8 │ request_id: u32 │ status:u8 │ body │
///     └─────────────┴───────┴─────────────────┴───────────┴──────┘
extension ByteBuffer {
    @inlinable
    mutating func writeAnswer(op: UInt8, requestID: UInt32, status: ResponseStatus, _ body: (inout ByteBuffer) -> Void) {
        writeFramed { buffer in
            buffer.writeInteger(op)
            buffer.writeInteger(requestID)
            buffer.writeInteger(status.rawValue)
            body(&buffer)
        }
    }

    /// HELLO OK: `protocol:u16 server:string`.
    public mutating func writeHelloAnswer(requestID: UInt32, protocolVersion: UInt16 = ProtocolConstants.version, server: String) {
        writeAnswer(op: Opcode.hello.rawValue, requestID: requestID, status: .ok) { buffer in
            buffer.writeInteger(protocolVersion)
            buffer.writeProtocolString(server)
        }
    }

    /// LATEST_KEY OK: `version:u32 key_len:u16 key`.
    public mutating func writeLatestKeyAnswer(requestID: UInt32, version: UInt32, key: UnsafeRawBufferPointer) {
        writeKeyAnswer(op: .latestKey, requestID: requestID, version: version, key: key)
    }

    /// GET_KEY OK: `key_len:u16 key`.
    public mutating func writeGetKeyAnswer(requestID: UInt32, key: UnsafeRawBufferPointer) {
        writeKeyAnswer(op: .getKey, requestID: requestID, version: nil, key: key)
    }

    /// The two answers of the cached path, written with one capacity check and plain stores: with
    /// 32 requests pipelined per client, the generic integer writes were a fifth of the daemon's
    /// time per answer.
    private mutating func writeKeyAnswer(op: Opcode, requestID: UInt32, version: UInt32?, key: UnsafeRawBufferPointer) {
        precondition(key.count <= Int(UInt16.max), "a data key of \(key.count) bytes")
        let header = 4 + ProtocolConstants.requestHeaderLength + 1 + (version == nil ? 0 : 4) + 2
        let total = header + key.count
        writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            out.storeBytes(of: UInt32(total - 4).bigEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: op.rawValue, toByteOffset: 4, as: UInt8.self)
            out.storeBytes(of: requestID.bigEndian, toByteOffset: 5, as: UInt32.self)
            out.storeBytes(of: ResponseStatus.ok.rawValue, toByteOffset: 9, as: UInt8.self)
            var offset = 10
            if let version {
                out.storeBytes(of: version.bigEndian, toByteOffset: offset, as: UInt32.self)
                offset += 4
            }
            out.storeBytes(of: UInt16(key.count).bigEndian, toByteOffset: offset, as: UInt16.self)
            UnsafeMutableRawBufferPointer(rebasing: out[header..<total]).copyMemory(from: key)
            return total
        }
    }

    /// ROTATE OK: `count:u32 count × (key_id:u32 new_version:u32)`.
    public mutating func writeRotateAnswer(requestID: UInt32, rotated: [RotatedKey]) {
        writeAnswer(op: Opcode.rotate.rawValue, requestID: requestID, status: .ok) { RotatedKey.write(rotated, to: &$0) }
    }

    /// ROTATE PARTIAL (7): see `RotationReport`.
    public mutating func writePartialRotationAnswer(requestID: UInt32, report: RotationReport) {
        writeAnswer(op: Opcode.rotate.rawValue, requestID: requestID, status: .partial) { report.write(to: &$0) }
    }

    /// STATUS OK: `json:string`, the document's text.
    public mutating func writeStatusAnswer(requestID: UInt32, document: StatusDocument) {
        writeStatusAnswer(requestID: requestID, json: document.json)
    }

    mutating func writeStatusAnswer(requestID: UInt32, json: String) {
        writeAnswer(op: Opcode.status.rawValue, requestID: requestID, status: .ok) { $0.writeProtocolString(json) }
    }

    /// ADMIN OK: `json:string`, the command's answer document.
    public mutating func writeAdminAnswer(requestID: UInt32, answer: some AdminAnswer) {
        writeAdminAnswer(requestID: requestID, json: answer.json)
    }

    mutating func writeAdminAnswer(requestID: UInt32, json: String) {
        writeAnswer(op: Opcode.admin.rawValue, requestID: requestID, status: .ok) { $0.writeProtocolString(json) }
    }

    /// INFO OK: see `InstanceInfo`.
    public mutating func writeInfoAnswer(requestID: UInt32, info: InstanceInfo) {
        writeAnswer(op: Opcode.info.rawValue, requestID: requestID, status: .ok) { info.write(to: &$0) }
    }

    /// REFUSED (8): `message:string code:string key:string` (see `KeyServiceRefusal`).
    public mutating func writeRefusal(op: Opcode, requestID: UInt32, _ refusal: KeyServiceRefusal) {
        writeAnswer(op: op.rawValue, requestID: requestID, status: .refused) { refusal.write(to: &$0) }
    }

    /// Any other non-OK answer: `message:string`. `op` is a byte because an unknown op is echoed too.
    public mutating func writeFailure(op: UInt8, requestID: UInt32, status: ResponseStatus, message: String) {
        writeAnswer(op: op, requestID: requestID, status: status) { $0.writeProtocolString(message) }
    }

    public mutating func writeFailure(op: Opcode, requestID: UInt32, status: ResponseStatus, message: String) {
        writeFailure(op: op.rawValue, requestID: requestID, status: status, message: message)
    }

    /// Encodes a decoded response again, through the encoders above.
    public mutating func writeResponse(_ response: Response) {
        let id = response.requestID
        switch response.body {
        case let .hello(version, server):
            writeHelloAnswer(requestID: id, protocolVersion: version, server: server)
        case let .latestKey(version, key):
            key.withUnsafeReadableBytes { writeLatestKeyAnswer(requestID: id, version: version, key: $0) }
        case let .getKey(key):
            key.withUnsafeReadableBytes { writeGetKeyAnswer(requestID: id, key: $0) }
        case let .rotate(keys):
            writeRotateAnswer(requestID: id, rotated: keys)
        case let .partialRotation(report):
            writePartialRotationAnswer(requestID: id, report: report)
        case let .status(json):
            writeStatusAnswer(requestID: id, json: json)
        case let .admin(json):
            writeAdminAnswer(requestID: id, json: json)
        case let .info(info):
            writeInfoAnswer(requestID: id, info: info)
        case let .refusal(refusal):
            writeRefusal(op: response.op, requestID: id, refusal)
        case let .failure(message):
            writeFailure(op: response.op, requestID: id, status: response.status, message: message)
        }
    }
}
