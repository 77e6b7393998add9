import NIOCore

/// A decoded request: `op:u8 request_id:u32 body`.
public struct Request: Sendable, Equatable {
    public enum Body: Sendable, Equatable {
        case hello(protocolVersion: UInt16, instance: String, client: String)
        case latestKey(keyID: UInt32)
        case getKey(keyID: UInt32, version: UInt32)
        case rotate(keyID: UInt32)
        case status
        case admin(AdminCommand)
        /// Extension: what the bound instance is (`InstanceInfo`).
        case info
    }

    public var requestID: UInt32
    public var body: Body

    public init(requestID: UInt32, body: Body) {
        self.requestID = requestID
        self.body = body
    }

    public var op: Opcode {
        switch body {
        case .hello: .hello
        case .latestKey: .latestKey
        case .getKey: .getKey
        case .rotate: .rotate
        case .status: .status
        case .admin: .admin
        case .info: .info
        }
    }

    /// The longest payload `cachedPathRequest` decodes (GET_KEY's).
    static let longestCachedPathPayload: UInt32 = 13

    /// A LATEST_KEY (9 bytes) or GET_KEY (13 bytes) payload at `offset`, read in place; nil for
    /// anything else, which the general decoder then takes (and refuses if it must).
    static func cachedPathRequest(in buffer: ByteBuffer, offset: Int, length: Int) -> Request? {
        guard let op = buffer.getInteger(at: offset, as: UInt8.self),
              let requestID = buffer.getInteger(at: offset + 1, as: UInt32.self),
              let keyID = buffer.getInteger(at: offset + 5, as: UInt32.self)
        else { return nil }
        switch (op, length) {
        case (Opcode.latestKey.rawValue, 9):
            return Request(requestID: requestID, body: .latestKey(keyID: keyID))
        case (Opcode.getKey.rawValue, 13):
            guard let version = buffer.getInteger(at: offset + 9, as: UInt32.self) else { return nil }
            return Request(requestID: requestID, body: .getKey(keyID: keyID, version: version))
        default:
            return nil
        }
    }

    /// Decodes one frame's payload (without the length prefix). The whole payload must be consumed.
    public init(payload: ByteBuffer) throws(ProtocolError) {
        var buffer = payload
        guard let opByte = buffer.readInteger(as: UInt8.self),
              let requestID = buffer.readInteger(as: UInt32.self)
        else {
            throw ProtocolError(requestID: nil, op: nil, message: "frame of \(payload.readableBytes) bytes is shorter than a request header (5 bytes)")
        }
        guard let op = Opcode(rawValue: opByte) else {
            throw ProtocolError(requestID: requestID, op: opByte, status: .unsupported,
                                message: "op 0x\(String(opByte, radix: 16)) is not part of protocol v1")
        }
        func fail(_ what: String) -> ProtocolError {
            ProtocolError(requestID: requestID, op: opByte, message: what)
        }
        func requireEnd(_ buffer: ByteBuffer) throws(ProtocolError) {
            if buffer.readableBytes != 0 { throw fail("\(buffer.readableBytes) unexpected bytes after the \(op) body") }
        }
        let body: Body
        switch op {
        case .hello:
            guard let version = buffer.readInteger(as: UInt16.self) else { throw fail("HELLO body is too short") }
            let instance = try buffer.readProtocolString(field: "instance", requestID: requestID, op: opByte)
            let client = try buffer.readProtocolString(field: "client", requestID: requestID, op: opByte)
            body = .hello(protocolVersion: version, instance: instance, client: client)
        case .latestKey:
            guard let keyID = buffer.readInteger(as: UInt32.self) else { throw fail("LATEST_KEY body is too short") }
            body = .latestKey(keyID: keyID)
        case .getKey:
            guard let keyID = buffer.readInteger(as: UInt32.self),
                  let version = buffer.readInteger(as: UInt32.self)
            else { throw fail("GET_KEY body is too short") }
            body = .getKey(keyID: keyID, version: version)
        case .rotate:
            guard let keyID = buffer.readInteger(as: UInt32.self) else { throw fail("ROTATE body is too short") }
            body = .rotate(keyID: keyID)
        case .status:
            body = .status
        case .info:
            body = .info
        case .admin:
            let text = try buffer.readProtocolString(field: "command", requestID: requestID, op: opByte)
            // The frame is checked first: only a sound frame with wrong words leaves the connection open.
            try requireEnd(buffer)
            body = .admin(try AdminCommand(text: text, requestID: requestID, op: opByte))
        }
        try requireEnd(buffer)
        self.init(requestID: requestID, body: body)
    }

    /// Writes the whole frame, length prefix included.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeFramed { buffer in
            buffer.writeInteger(op.rawValue)
            buffer.writeInteger(requestID)
            switch body {
            case let .hello(version, instance, client):
                buffer.writeInteger(version)
                buffer.writeProtocolString(instance)
                buffer.writeProtocolString(client)
            case let .latestKey(keyID), let .rotate(keyID):
                buffer.writeInteger(keyID)
            case let .getKey(keyID, version):
                buffer.writeInteger(keyID)
                buffer.writeInteger(version)
            case .status, .info:
                break
            case let .admin(command):
                buffer.writeProtocolString(command.text)
            }
        }
    }
}
