/// An `[instances.NAME]` table with `provider = "aws"`, as parsed from the configuration.
public struct AWSSettings: Sendable, Equatable {
    /// Key id, key ARN, `alias/NAME` or alias ARN. Without it no new data keys are created.
    public var masterKeyID: String?
    public var region: String?
    /// KMS endpoint override (VPC endpoint, test server).
    public var endpointURL: String?
    /// STS endpoint override, for role assumption, web identity and two-factor start.
    public var stsEndpointURL: String?
    public var requestTimeoutMilliseconds: Int
    public var maxRetries: Int
    public var profile: String?
    public var useFIPSEndpoint: Bool
    /// Two-factor start: the MFA device's serial number or ARN.
    public var mfaSerial: String?
    /// KMS calls in flight at once (the HTTP thread pool's size).
    public var concurrency: Int
    /// New data keys get a KMS EncryptionContext naming the instance, key id and version.
    public var encryptionContext = false

    public init(masterKeyID: String? = nil, region: String? = nil, endpointURL: String? = nil, stsEndpointURL: String? = nil,
                requestTimeoutMilliseconds: Int = 5000, maxRetries: Int = 3, profile: String? = nil, useFIPSEndpoint: Bool = false,
                mfaSerial: String? = nil, concurrency: Int = 16) {
        self.masterKeyID = masterKeyID
        self.region = region
        self.endpointURL = endpointURL
        self.stsEndpointURL = stsEndpointURL
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.maxRetries = maxRetries
        self.profile = profile
        self.useFIPSEndpoint = useFIPSEndpoint
        self.mfaSerial = mfaSerial
        self.concurrency = concurrency
    }

    /// Letters, digits and "-" (us-east-1, eu-central-2, us-gov-west-1).
    public static func isValidRegion(_ region: String) -> Bool {
        !region.isEmpty && region.utf8.count <= 64 && region.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
    }
}
