import NIOCore

/// The body of an answer with status REFUSED (8): the key service (AWS KMS, a KMIP server)
/// refused the request — access denied, key disabled, key pending deletion.
///
///     message:string  code:string  key:string
///
/// It starts with `message:string` like every non-OK body, so a client that does not know REFUSED
/// reads it as a failure with that sentence. `code` is the service's own error code
/// (`DisabledException`, `AccessDeniedException`, `KMSInvalidStateException`, KMIP's result
/// reason such as `PermissionDenied`); `key` the master key concerned, as configured (an alias,
/// an ARN, a KMIP identifier), or empty when not known. Code and key are at most 255 bytes.
public struct KeyServiceRefusal: Sendable, Equatable {
    public static let maximumFieldLength = 255

    public var message: String
    public var code: String
    public var key: String

    public init(message: String, code: String, key: String) {
        self.message = message
        self.code = code
        self.key = key
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeProtocolString(message)
        buffer.writeProtocolString(code, limit: Self.maximumFieldLength)
        buffer.writeProtocolString(key, limit: Self.maximumFieldLength)
    }

    init(reading buffer: inout ByteBuffer, requestID: UInt32, op: UInt8) throws(ProtocolError) {
        message = try buffer.readProtocolString(field: "message", requestID: requestID, op: op)
        code = try buffer.readProtocolString(field: "code", requestID: requestID, op: op)
        key = try buffer.readProtocolString(field: "key", requestID: requestID, op: op)
    }
}
