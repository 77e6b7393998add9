/// The identity of one instance's key set: a random name created with its store and kept in it
/// for ever (`state_dir/<instance>/key-set`, or an object of a shared store). Two stores with the
/// same identity hold the same keys; a store that was lost and created again has a new one.
///
/// The plugin records the identity in the datadir on its first start and refuses to start when the
/// broker later serves another one, so a datadir is never handed new keys for data that was
/// encrypted with old ones (docs/multi-host.md). Written as a UUID (version 4, lower case); read
/// back as any 1 to 64 bytes of letters, digits, '.', '_' and '-', so that a store made by another
/// tool can carry its own form.
public struct KeySetIdentity: Sendable, Hashable, CustomStringConvertible {
    public let value: String

    public static let maximumLength = 64

    /// Nil when `text` is not an identity (empty, too long, or a character outside the set).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard (1...Self.maximumLength).contains(bytes.count), bytes.allSatisfy(Self.allowed) else { return nil }
        value = text
    }

    /// A new identity, from the system's random generator.
    public static func generate() -> KeySetIdentity {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = bytes[6] & 0x0F | 0x40  // version 4
        bytes[8] = bytes[8] & 0x3F | 0x80  // RFC 4122 variant
        let hex = bytes.map { byte in String(byte >> 4, radix: 16) + String(byte & 0x0F, radix: 16) }.joined()
        let groups = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { range in
            String(hex.dropFirst(range.lowerBound).prefix(range.count))
        }
        return KeySetIdentity(groups.joined(separator: "-"))!
    }

    /// The stored form: the identity and a newline.
    public var fileContent: [UInt8] { Array((value + "\n").utf8) }

    /// Reads the stored form (a trailing newline is allowed, nothing else around the identity).
    public init?(fileContent: [UInt8]) {
        var bytes = fileContent[...]
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        self.init(text)
    }

    public var description: String { value }

    private static func allowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}
