/// A KMIP protocol version, ordered (1.2 < 1.4 < 2.0).
public struct ProtocolVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int32
    public var minor: Int32

    public init(_ major: Int32, _ minor: Int32) {
        self.major = major
        self.minor = minor
    }

    public static func < (a: ProtocolVersion, b: ProtocolVersion) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }

    public var description: String { "\(major).\(minor)" }

    /// Encrypt and Decrypt exist from 1.2; the GCM tag and additional data travel from 1.4.
    public static let v1_2 = ProtocolVersion(1, 2)
    public static let v1_3 = ProtocolVersion(1, 3)
    public static let v1_4 = ProtocolVersion(1, 4)
    /// What keybroker speaks, best first. 2.x changes the attribute encoding and is not spoken.
    public static let supported: [ProtocolVersion] = [.v1_4, .v1_3, .v1_2]

    var ttlv: TTLV {
        .structure(.protocolVersion, [.integer(.protocolVersionMajor, major), .integer(.protocolVersionMinor, minor)])
    }

    init?(_ item: TTLV) {
        guard let major = item[.protocolVersionMajor]?.int32, let minor = item[.protocolVersionMinor]?.int32 else { return nil }
        self.init(major, minor)
    }
}
