/// A request that breaks the wire format, or (`closesConnection` false) a well-formed frame whose
/// body names something the protocol does not have, such as an unknown ADMIN command. The
/// connection that sent a malformed frame is closed after the answer.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request id when enough of the frame arrived to read it; without one no answer can be sent.
    public var requestID: UInt32?
    public var op: UInt8?
    /// `.badRequest` or `.unsupported`.
    public var status: ResponseStatus
    public var message: String
    /// False when the frame itself was sound: the peer is answered and may go on.
    public var closesConnection: Bool

    public init(requestID: UInt32?, op: UInt8?, status: ResponseStatus = .badRequest, message: String, closesConnection: Bool = true) {
        self.requestID = requestID
        self.op = op
        self.status = status
        self.message = message
        self.closesConnection = closesConnection
    }

    public var description: String { message }
}
