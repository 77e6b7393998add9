import NIOCore

/// The two building blocks of every message: frames (`length:u32 payload`) and strings
/// (`len:u16 bytes`, UTF-8).
extension ByteBuffer {
    /// Writes `length:u32` followed by what `payload` writes, through NIOCore's length prefix.
    @inlinable
    mutating func writeFramed(_ payload: (inout ByteBuffer) -> Void) {
        do {
            try writeLengthPrefixed(as: UInt32.self) { buffer in
                let start = buffer.writerIndex
                payload(&buffer)
                return buffer.writerIndex - start
            }
        } catch {
            // A ByteBuffer never holds more than UInt32.max bytes, so the length always fits.
            preconditionFailure("a frame longer than UInt32.max bytes")
        }
    }

    /// `len:u16 bytes`, UTF-8. Strings longer than `limit` bytes are cut at a character boundary.
    public mutating func writeProtocolString(_ string: String, limit: Int = Int(UInt16.max)) {
        let utf8 = string.utf8
        if utf8.count <= min(limit, Int(UInt16.max)) {
            writeInteger(UInt16(utf8.count))
            writeString(string)
            return
        }
        let bytes = Array(utf8)
        // Back up from the first byte left out to the start of its character.
        var end = min(limit, Int(UInt16.max))
        while end > 0, bytes[end] & 0xC0 == 0x80 { end -= 1 }
        writeInteger(UInt16(end))
        writeBytes(bytes[..<end])
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
}
