/// Request payloads of the operations keybroker sends, and readers for their answers.
public enum Payloads {
    /// Discover Versions: the versions the client speaks, best first.
    public static func discoverVersions(_ versions: [ProtocolVersion]) -> RequestMessage.Item {
        RequestMessage.Item(.discoverVersions, versions.map(\.ttlv))
    }

    /// The versions in a Discover Versions answer, in the server's order of preference.
    public static func versions(in payload: TTLV) -> [ProtocolVersion] {
        payload.all(.protocolVersion).compactMap(ProtocolVersion.init)
    }

    /// Locate by Name (an uninterpreted text string) and Object Type, as KMIP 1.x encodes
    /// attributes: `Attribute { Attribute Name, Attribute Value }`.
    public static func locate(name: String, objectType: ObjectType) -> RequestMessage.Item {
        RequestMessage.Item(.locate, [
            attribute("Object Type", .enumeration(.attributeValue, objectType.rawValue)),
            attribute("Name", .structure(.attributeValue, [
                .text(.nameValue, name),
                .enumeration(.nameType, NameType.uninterpretedTextString.rawValue),
            ])),
        ])
    }

    public static func identifiers(in payload: TTLV) -> [String] {
        payload.all(.uniqueIdentifier).compactMap(\.text)
    }

    public static func getAttributes(_ uniqueIdentifier: String, names: [String]) -> RequestMessage.Item {
        RequestMessage.Item(.getAttributes, [.text(.uniqueIdentifier, uniqueIdentifier)] + names.map { .text(.attributeName, $0) })
    }

    /// Attribute values by name from a Get Attributes answer (the first of each name).
    public static func attributes(in payload: TTLV) -> [String: TTLV] {
        var result: [String: TTLV] = [:]
        for attribute in payload.all(.attribute) {
            guard let name = attribute[.attributeName]?.text, let value = attribute[.attributeValue], result[name] == nil else { continue }
            result[name] = value
        }
        return result
    }

    public static func cryptographicParameters(mode: BlockCipherMode, padding: PaddingMethod?, tagLength: Int32?) -> TTLV {
        var parameters: [TTLV] = [.enumeration(.blockCipherMode, mode.rawValue)]
        if let padding { parameters.append(.enumeration(.paddingMethod, padding.rawValue)) }
        parameters.append(.enumeration(.cryptographicAlgorithm, CryptographicAlgorithm.aes.rawValue))
        if let tagLength { parameters.append(.integer(.tagLength, tagLength)) }
        return .structure(.cryptographicParameters, parameters)
    }

    /// Encrypt `data` under the key `uniqueIdentifier`. Without an IV the server makes one (as
    /// FIPS 140 asks of GCM) and returns it.
    public static func encrypt(_ uniqueIdentifier: String, parameters: TTLV, data: [UInt8], iv: [UInt8]? = nil,
                               additionalData: [UInt8]? = nil) -> RequestMessage.Item {
        var payload: [TTLV] = [.text(.uniqueIdentifier, uniqueIdentifier), parameters, .bytes(.data, data)]
        if let iv { payload.append(.bytes(.ivCounterNonce, iv)) }
        if let additionalData { payload.append(.bytes(.authenticatedEncryptionAdditionalData, additionalData)) }
        return RequestMessage.Item(.encrypt, payload)
    }

    public static func decrypt(_ uniqueIdentifier: String, parameters: TTLV, data: [UInt8], iv: [UInt8]?,
                               additionalData: [UInt8]? = nil, tag: [UInt8]? = nil) -> RequestMessage.Item {
        var payload: [TTLV] = [.text(.uniqueIdentifier, uniqueIdentifier), parameters, .bytes(.data, data)]
        if let iv { payload.append(.bytes(.ivCounterNonce, iv)) }
        if let additionalData { payload.append(.bytes(.authenticatedEncryptionAdditionalData, additionalData)) }
        if let tag { payload.append(.bytes(.authenticatedEncryptionTag, tag)) }
        return RequestMessage.Item(.decrypt, payload)
    }

    /// An Encrypt answer: the ciphertext, the IV the server used, and the tag of an AEAD mode.
    public struct Encrypted: Sendable {
        public var uniqueIdentifier: String?
        public var data: [UInt8]
        public var iv: [UInt8]?
        public var tag: [UInt8]?
    }

    public static func encrypted(in payload: TTLV) -> Encrypted? {
        guard let data = payload[.data]?.byteString else { return nil }
        return Encrypted(uniqueIdentifier: payload[.uniqueIdentifier]?.text, data: data,
                         iv: payload[.ivCounterNonce]?.byteString, tag: payload[.authenticatedEncryptionTag]?.byteString)
    }

    private static func attribute(_ name: String, _ value: TTLV) -> TTLV {
        .structure(.attribute, [.text(.attributeName, name), value])
    }
}
