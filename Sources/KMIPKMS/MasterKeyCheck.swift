import KMIPProtocol

/// What the server says about the master key, turned into the line a DBA acts on.
struct MasterKeyCheck: Sendable {
    var uniqueIdentifier: String
    var state: ObjectState?
    var algorithm: UInt32?
    var length: Int32?
    var usageMask: Int32?

    static let attributeNames = ["State", "Cryptographic Algorithm", "Cryptographic Length", "Cryptographic Usage Mask"]
    static let encryptBit: Int32 = 0x04
    static let decryptBit: Int32 = 0x08

    init(uniqueIdentifier: String, attributes: [String: TTLV]) {
        self.uniqueIdentifier = uniqueIdentifier
        state = attributes["State"]?.enumValue.flatMap(ObjectState.init(rawValue:))
        algorithm = attributes["Cryptographic Algorithm"]?.enumValue
        length = attributes["Cryptographic Length"]?.int32
        usageMask = attributes["Cryptographic Usage Mask"]?.int32
    }

    /// What stops the key from wrapping data keys; empty when nothing does.
    var problems: [String] {
        var found: [String] = []
        if let state, let problem = Self.stateProblem(state) { found.append(problem) }
        if let algorithm, algorithm != CryptographicAlgorithm.aes.rawValue { found.append("it is not an AES key (algorithm \(algorithm))") }
        if let usageMask {
            var missing: [String] = []
            if usageMask & Self.encryptBit == 0 { missing.append("Encrypt") }
            if usageMask & Self.decryptBit == 0 { missing.append("Decrypt") }
            if !missing.isEmpty { found.append("its Cryptographic Usage Mask lacks \(missing.joined(separator: " and "))") }
        }
        return found
    }

    static func stateProblem(_ state: ObjectState) -> String? {
        switch state {
        case .active: nil
        case .preActive: "it is not active (state Pre-Active): activate it in the key manager"
        case .deactivated: "it is revoked (state Deactivated): stored keys cannot be unwrapped until the key manager re-enables it"
        case .compromised: "it is revoked as compromised (state Compromised)"
        case .destroyed, .destroyedCompromised: "it is destroyed (state \(state)): keys wrapped under it are lost unless the key manager restores it from a backup"
        }
    }

    var summary: String {
        var parts = ["state \(state?.description ?? "unknown")"]
        if let length { parts.append("AES-\(length)") }
        return parts.joined(separator: ", ")
    }
}
