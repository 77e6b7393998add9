/// Fixed numbers of keybroker wire protocol v1 (docs/protocol.md).
public enum ProtocolConstants {
    public static let version: UInt16 = 1
    /// Largest payload a frame may carry; the 4-byte length prefix is not counted.
    public static let maximumFrameLength = 65536
    /// ROTATE's key id meaning "every key of the instance".
    public static let allKeys: UInt32 = 0xFFFF_FFFF
    /// op:u8 + request_id:u32
    public static let requestHeaderLength = 5
    /// op:u8 + request_id:u32 + status:u8
    public static let responseHeaderLength = 6
    /// The longest message a PARTIAL answer carries (longer ones are cut).
    public static let maximumPartialMessageLength = 200
    /// Keys one ROTATE of every key may cover: its answer, OK (8 bytes a key) or PARTIAL (a message,
    /// then at most 8 bytes a key), must fit one frame.
    public static let maximumRotatedKeys =
        (maximumFrameLength - responseHeaderLength - 2 - maximumPartialMessageLength - 4 - 4) / 8
}

public enum Opcode: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case latestKey = 0x02
    case getKey = 0x03
    case rotate = 0x04
    case status = 0x05
    /// Extension to v1 (docs/protocol.md): admin commands the five ops cannot express.
    case admin = 0x06
    /// Extension to v1 (docs/protocol.md): what the bound instance is (provider, master key, where).
    case info = 0x07
}

public enum ResponseStatus: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case ok = 0
    /// No such key or version, and none may be created.
    case notFound = 1
    /// KMS or storage failed transiently: retry.
    case unavailable = 2
    /// The peer may not use this instance (or this admin command).
    case denied = 3
    case badRequest = 4
    case `internal` = 5
    /// Protocol version or op not supported.
    case unsupported = 6
    /// ROTATE of every key: some keys were rotated and some not; the body gives each key's result
    /// after the message, so an older client reads it as a failure with a message.
    case partial = 7
    /// The key service (KMS, KMIP server) refused the request: access denied, key disabled or in
    /// the wrong state. The body gives the service's error code and the key after the message.
    case refused = 8
    /// The instance waits for `keybrokerctl unlock` (two-factor start): retry after the unlock.
    case locked = 9

    public var description: String {
        switch self {
        case .ok: "OK"
        case .notFound: "NOT_FOUND"
        case .unavailable: "UNAVAILABLE"
        case .denied: "DENIED"
        case .badRequest: "BAD_REQUEST"
        case .internal: "INTERNAL"
        case .unsupported: "UNSUPPORTED"
        case .partial: "PARTIAL"
        case .refused: "REFUSED"
        case .locked: "LOCKED"
        }
    }
}
