import SecureMemory

/// One set of AWS credentials. The secret key lives in locked memory; the access key id and the
/// session token are sent in headers anyway and are only kept out of log lines.
public struct AWSCredentials: Sendable {
    public var accessKeyID: String
    public var secretAccessKey: SecureBytes
    public var sessionToken: String?
    /// Unix time after which AWS refuses them; nil for long-term keys.
    public var expiration: Int64?
    /// Where they came from, for log lines ("environment", "web identity", …).
    public var source: String

    public init(accessKeyID: String, secretAccessKey: SecureBytes, sessionToken: String?, expiration: Int64?, source: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken.flatMap { $0.isEmpty ? nil : $0 }
        self.expiration = expiration
        self.source = source
    }

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String?, expiration: Int64? = nil, source: String) {
        self.init(accessKeyID: accessKeyID, secretAccessKey: SecureBytes(copying: Array(secretAccessKey.utf8)),
                  sessionToken: sessionToken, expiration: expiration, source: source)
    }

    /// True when they expire within `margin` seconds of `now`.
    public func expires(within margin: Int64, now: Int64) -> Bool {
        guard let expiration else { return false }
        return expiration - now <= margin
    }

    /// The access key id with all but its first 4 and last 4 characters hidden, for log lines.
    public var redactedAccessKeyID: String {
        guard accessKeyID.count > 8 else { return "****" }
        return String(accessKeyID.prefix(4)) + "…" + String(accessKeyID.suffix(4))
    }
}
