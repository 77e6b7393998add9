/// A request that breaks the wire format. The connection that sent it is closed after the answer.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request id when enough of the frame arrived to read it; without one no answer can be sent.
    public var requestID: UInt32?
    public var op: UInt8?
    /// `.badRequest` or `.unsupported`.
    public var status: ResponseStatus
    public var message: String

    public init(requestID: UInt32?, op: UInt8?, status: ResponseStatus = .badRequest, message: String) {
        self.requestID = requestID
        self.op = op
        self.status = status
        self.message = message
    }

    public var description: String { message }
}
