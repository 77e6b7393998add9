/// One KMIP item in TTLV form (Tag, Type, Length, Value; KMIP 1.x spec section 9.1), the unit of
/// every KMIP message. A structure holds further items in order.
///
///     tag:3 bytes (0x42XXXX) | type:u8 | length:u32 | value, padded with zeros to a multiple of 8
///
/// Integers and enumerations take 4 bytes of value plus 4 of padding; long integers, date-times and
/// booleans take 8; text and byte strings their length, padded.
public struct TTLV: Sendable, Equatable {
    public var tag: Tag
    public var value: Value

    public enum Value: Sendable, Equatable {
        case structure([TTLV])
        case integer(Int32)
        case longInteger(Int64)
        /// Big-endian two's complement, a multiple of 8 bytes.
        case bigInteger([UInt8])
        case enumeration(UInt32)
        case boolean(Bool)
        case textString(String)
        case byteString([UInt8])
        /// Seconds since the Unix epoch.
        case dateTime(Int64)
        case interval(UInt32)
    }

    public init(_ tag: Tag, _ value: Value) {
        self.tag = tag
        self.value = value
    }

    public static func structure(_ tag: Tag, _ children: [TTLV]) -> TTLV { TTLV(tag, .structure(children)) }
    public static func integer(_ tag: Tag, _ value: Int32) -> TTLV { TTLV(tag, .integer(value)) }
    public static func enumeration(_ tag: Tag, _ value: UInt32) -> TTLV { TTLV(tag, .enumeration(value)) }
    public static func boolean(_ tag: Tag, _ value: Bool) -> TTLV { TTLV(tag, .boolean(value)) }
    public static func text(_ tag: Tag, _ value: String) -> TTLV { TTLV(tag, .textString(value)) }
    public static func bytes(_ tag: Tag, _ value: [UInt8]) -> TTLV { TTLV(tag, .byteString(value)) }

    /// The type byte of the encoding.
    public var typeCode: UInt8 {
        switch value {
        case .structure: 0x01
        case .integer: 0x02
        case .longInteger: 0x03
        case .bigInteger: 0x04
        case .enumeration: 0x05
        case .boolean: 0x06
        case .textString: 0x07
        case .byteString: 0x08
        case .dateTime: 0x09
        case .interval: 0x0A
        }
    }

    // MARK: Reading a decoded tree
    //
    // Not inlined: swiftc 6.3 -O (copy propagation) crashes on callers that chain these pattern
    // matches through optionals once they are inlined across modules.

    @inline(never)
    public var children: [TTLV] {
        if case let .structure(children) = value { return children }
        return []
    }

    /// The first child with `tag`.
    @inline(never)
    public subscript(_ tag: Tag) -> TTLV? {
        children.first { $0.tag == tag }
    }

    @inline(never)
    public func all(_ tag: Tag) -> [TTLV] {
        children.filter { $0.tag == tag }
    }

    @inline(never)
    public var int32: Int32? {
        if case let .integer(value) = value { return value }
        return nil
    }

    @inline(never)
    public var enumValue: UInt32? {
        if case let .enumeration(value) = value { return value }
        return nil
    }

    @inline(never)
    public var text: String? {
        if case let .textString(value) = value { return value }
        return nil
    }

    @inline(never)
    public var byteString: [UInt8]? {
        if case let .byteString(value) = value { return value }
        return nil
    }

    @inline(never)
    public var dateTime: Int64? {
        if case let .dateTime(value) = value { return value }
        return nil
    }

    /// Calls `body` with the storage of every byte string in the tree, so a caller can zero the
    /// ones that held secrets (a decrypted data key) where they are, without copying them first.
    public func forEachByteString(_ body: (UnsafeRawBufferPointer) -> Void) {
        switch value {
        case let .structure(children):
            for child in children { child.forEachByteString(body) }
        case let .byteString(bytes), let .bigInteger(bytes):
            bytes.withUnsafeBytes(body)
        default:
            break
        }
    }
}

/// A KMIP tag: three bytes, 0x42XXXX for the standard ones (0x54XXXX for extensions).
public struct Tag: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    public var description: String {
        let hex = String(rawValue, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 6 - hex.count)) + hex
    }
}
