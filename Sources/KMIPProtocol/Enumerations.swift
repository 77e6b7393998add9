/// The enumeration values keybroker uses (KMIP 1.x specification, section 9.1.3.2).
public enum Operation: UInt32, Sendable {
    case create = 0x01
    case locate = 0x08
    case get = 0x0A
    case getAttributes = 0x0B
    case activate = 0x12
    case revoke = 0x13
    case destroy = 0x14
    case query = 0x18
    case discoverVersions = 0x1E
    case encrypt = 0x1F
    case decrypt = 0x20

    public var name: String {
        switch self {
        case .create: "Create"
        case .locate: "Locate"
        case .get: "Get"
        case .getAttributes: "Get Attributes"
        case .activate: "Activate"
        case .revoke: "Revoke"
        case .destroy: "Destroy"
        case .query: "Query"
        case .discoverVersions: "Discover Versions"
        case .encrypt: "Encrypt"
        case .decrypt: "Decrypt"
        }
    }
}

public enum ObjectType: UInt32, Sendable {
    case certificate = 0x01
    case symmetricKey = 0x02
}

public enum CryptographicAlgorithm: UInt32, Sendable {
    case aes = 0x03
}

public enum BlockCipherMode: UInt32, Sendable {
    case cbc = 0x01
    case gcm = 0x09
}

public enum PaddingMethod: UInt32, Sendable {
    case none = 0x01
    case pkcs5 = 0x03
}

public enum NameType: UInt32, Sendable {
    case uninterpretedTextString = 0x01
}

public enum BatchErrorContinuationOption: UInt32, Sendable {
    case `continue` = 0x01
    case stop = 0x02
}

public enum ResultStatus: UInt32, Sendable {
    case success = 0x00
    case operationFailed = 0x01
    case operationPending = 0x02
    case operationUndone = 0x03
}

/// Why an operation failed. Unknown values are kept as they came (`other`).
public enum ResultReason: Sendable, Equatable, CustomStringConvertible {
    case itemNotFound, responseTooLarge, authenticationNotSuccessful, invalidMessage, operationNotSupported
    case missingData, invalidField, featureNotSupported, operationCanceled, cryptographicFailure
    case illegalOperation, permissionDenied, objectArchived, generalFailure
    case other(UInt32)

    public init(rawValue: UInt32) {
        switch rawValue {
        case 0x01: self = .itemNotFound
        case 0x02: self = .responseTooLarge
        case 0x03: self = .authenticationNotSuccessful
        case 0x04: self = .invalidMessage
        case 0x05: self = .operationNotSupported
        case 0x06: self = .missingData
        case 0x07: self = .invalidField
        case 0x08: self = .featureNotSupported
        case 0x09: self = .operationCanceled
        case 0x0A: self = .cryptographicFailure
        case 0x0B: self = .illegalOperation
        case 0x0C: self = .permissionDenied
        case 0x0D: self = .objectArchived
        case 0x100: self = .generalFailure
        default: self = .other(rawValue)
        }
    }

    public var description: String {
        switch self {
        case .itemNotFound: "Item Not Found"
        case .responseTooLarge: "Response Too Large"
        case .authenticationNotSuccessful: "Authentication Not Successful"
        case .invalidMessage: "Invalid Message"
        case .operationNotSupported: "Operation Not Supported"
        case .missingData: "Missing Data"
        case .invalidField: "Invalid Field"
        case .featureNotSupported: "Feature Not Supported"
        case .operationCanceled: "Operation Canceled By Requester"
        case .cryptographicFailure: "Cryptographic Failure"
        case .illegalOperation: "Illegal Operation"
        case .permissionDenied: "Permission Denied"
        case .objectArchived: "Object Archived"
        case .generalFailure: "General Failure"
        case let .other(value): "reason 0x\(String(value, radix: 16))"
        }
    }
}

/// A managed object's life-cycle state (KMIP 1.x specification, section 3.22).
public enum ObjectState: UInt32, Sendable, CustomStringConvertible {
    case preActive = 0x01
    case active = 0x02
    case deactivated = 0x03
    case compromised = 0x04
    case destroyed = 0x05
    case destroyedCompromised = 0x06

    public var description: String {
        switch self {
        case .preActive: "Pre-Active"
        case .active: "Active"
        case .deactivated: "Deactivated"
        case .compromised: "Compromised"
        case .destroyed: "Destroyed"
        case .destroyedCompromised: "Destroyed Compromised"
        }
    }
}
