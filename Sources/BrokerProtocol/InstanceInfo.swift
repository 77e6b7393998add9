import NIOCore

/// The body of an OK answer to INFO (0x07): what the bound instance is, as named fields.
///
///     count:u16  count × (name:string, value:string)
///
/// Names in use: `instance`, `provider` (`aws`, `kmip`, `local`), `master_key` (as configured:
/// `alias/mariadb-encryption`, a KMIP identifier, a key file), `location` (the AWS region, the
/// KMIP server, the host), `state` (`ready`, or what is wrong). A client ignores names it does
/// not know, so fields can be added without a protocol change; it must not depend on their
/// order. At most 64 fields, each name and value at most 255 bytes.
public struct InstanceInfo: Sendable, Equatable {
    public static let maximumFields = 64

    public var fields: [(name: String, value: String)]

    public init(_ fields: [(name: String, value: String)]) {
        self.fields = Array(fields.prefix(Self.maximumFields))
    }

    public subscript(name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    public static func == (lhs: InstanceInfo, rhs: InstanceInfo) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(fields.count))
        for field in fields {
            buffer.writeProtocolString(field.name, limit: KeyServiceRefusal.maximumFieldLength)
            buffer.writeProtocolString(field.value, limit: KeyServiceRefusal.maximumFieldLength)
        }
    }

    init(reading buffer: inout ByteBuffer, requestID: UInt32, op: UInt8) throws(ProtocolError) {
        guard let count = buffer.readInteger(as: UInt16.self) else {
            throw ProtocolError(requestID: requestID, op: op, message: "INFO response too short")
        }
        guard count <= Self.maximumFields else {
            throw ProtocolError(requestID: requestID, op: op, message: "INFO response has \(count) fields; at most \(Self.maximumFields) are allowed")
        }
        var fields: [(name: String, value: String)] = []
        for _ in 0..<count {
            let name = try buffer.readProtocolString(field: "name", requestID: requestID, op: op)
            let value = try buffer.readProtocolString(field: "value", requestID: requestID, op: op)
            fields.append((name, value))
        }
        self.fields = fields
    }
}
