/// A failed AWS call, described for a DBA: the operation, AWS's error code and message.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// AWS answered with an error document.
        case service(code: String)
        /// No answer: connection refused, reset, timed out, DNS, TLS.
        case transport
        /// No usable credentials (none found, or the source failed).
        case credentials
        /// The instance waits for `keybrokerctl unlock` (two-factor start).
        case locked
        /// An answer we cannot read.
        case malformed
    }

    public var kind: Kind
    /// "KMS Decrypt", "STS AssumeRole", "credentials", …
    public var operation: String
    public var status: Int?
    public var message: String
    /// Set by the caller when a retry later may succeed (credential sources that are down).
    public var transient: Bool
    /// AWS's id of the failed request, so the line can be matched with CloudTrail and AWS support.
    public var requestID: String?

    public init(_ kind: Kind, operation: String, status: Int? = nil, message: String, transient: Bool = false) {
        self.kind = kind
        self.operation = operation
        self.status = status
        self.message = message
        self.transient = transient
    }

    public var code: String? {
        if case let .service(code) = kind { return code }
        return nil
    }

    public var description: String {
        switch kind {
        case let .service(code):
            return "\(operation) failed: \(code)\(status.map { " (HTTP \($0))" } ?? ""): \(message)\(requestID.map { " [AWS request id \($0)]" } ?? "")"
        case .transport:
            return "\(operation) failed: no answer from AWS: \(message)"
        case .credentials, .locked:
            return message
        case .malformed:
            return "\(operation) failed: unreadable answer: \(message)\(requestID.map { " [AWS request id \($0)]" } ?? "")"
        }
    }

    /// Error codes that mean "try again later".
    public static let retryableCodes: Set<String> = [
        "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
        "ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded",
        "LimitExceededException", "BandwidthLimitExceeded", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
        "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable",
        "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException", "IDPCommunicationError",
        // S3: a conditional write raced another one on the same key; S3 asks for a retry.
        "ConditionalRequestConflict",
    ]

    /// Codes that mean the credentials themselves are stale: refresh them and try once more.
    public static let expiredCredentialCodes: Set<String> = ["ExpiredTokenException", "ExpiredToken", "RequestExpired"]

    /// Whether a retry of the same request may succeed.
    public var isRetryable: Bool {
        switch kind {
        case .transport: return true
        case let .service(code):
            if Self.retryableCodes.contains(code) { return true }
            if let status, status >= 500 || status == 429 { return true }
            return false
        case .credentials: return transient
        case .locked, .malformed: return false
        }
    }
}
