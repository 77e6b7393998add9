import NIOCore

extension ByteBuffer {
    /// Writes `length:u32` followed by what `body` writes, filling in the length afterwards.
    @inlinable
    public mutating func writeFrame(_ body: (inout ByteBuffer) -> Void) {
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        body(&self)
        setInteger(UInt32(writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    /// `len:u16 bytes`, UTF-8. Strings longer than 65535 bytes are cut at a character boundary.
    public mutating func writeProtocolString(_ string: String) {
        var utf8 = Array(string.utf8)
        if utf8.count > Int(UInt16.max) {
            utf8 = Array(utf8.prefix(Int(UInt16.max)))
            while let last = utf8.last, last & 0xC0 == 0x80 { utf8.removeLast() }
            if let last = utf8.last, last >= 0xC0 { utf8.removeLast() }
        }
        writeInteger(UInt16(utf8.count))
        writeBytes(utf8)
    }

    mutating func readProtocolString(field: String, requestID: UInt32, op: UInt8) throws(ProtocolError) -> String {
        guard let length = readInteger(as: UInt16.self) else {
            throw ProtocolError(requestID: requestID, op: op, message: "\(field) string is missing its length")
        }
        guard let bytes = readBytes(length: Int(length)) else {
            throw ProtocolError(requestID: requestID, op: op, message: "\(field) string is shorter than its length \(length)")
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw ProtocolError(requestID: requestID, op: op, message: "\(field) string is not valid UTF-8")
        }
        return string
    }

    /// Writes a response header for `op`/`requestID` with `status`, framed; `body` writes the rest.
    @inlinable
    public mutating func writeResponse(op: UInt8, requestID: UInt32, status: ResponseStatus, _ body: (inout ByteBuffer) -> Void) {
        writeFrame { buffer in
            buffer.writeInteger(op)
            buffer.writeInteger(requestID)
            buffer.writeInteger(status.rawValue)
            body(&buffer)
        }
    }

    /// A non-OK response: `message:string`.
    public mutating func writeFailure(op: UInt8, requestID: UInt32, status: ResponseStatus, message: String) {
        writeResponse(op: op, requestID: requestID, status: status) { $0.writeProtocolString(message) }
    }

    /// A REFUSED response: `message:string code:string key:string`.
    public mutating func writeRefusal(op: UInt8, requestID: UInt32, _ refusal: KeyServiceRefusal) {
        writeResponse(op: op, requestID: requestID, status: .refused) { refusal.write(to: &$0) }
    }

    /// Encodes a response value (clients and tests; the daemon writes key bytes directly).
    public mutating func writeResponse(_ response: Response) {
        writeResponse(op: response.op, requestID: response.requestID, status: response.status) { buffer in
            switch response.body {
            case let .hello(version, server):
                buffer.writeInteger(version)
                buffer.writeProtocolString(server)
            case let .latestKey(version, key):
                buffer.writeInteger(version)
                buffer.writeInteger(UInt16(key.count))
                buffer.writeBytes(key)
            case let .getKey(key):
                buffer.writeInteger(UInt16(key.count))
                buffer.writeBytes(key)
            case let .rotate(keys):
                RotatedKey.write(keys, to: &buffer)
            case let .partialRotation(report):
                report.write(to: &buffer)
            case let .status(json), let .admin(json):
                buffer.writeProtocolString(json)
            case let .info(info):
                info.write(to: &buffer)
            case let .refusal(refusal):
                refusal.write(to: &buffer)
            case let .failure(message):
                buffer.writeProtocolString(message)
            }
        }
    }
}
