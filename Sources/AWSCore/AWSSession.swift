import Logging
import ProviderSettings

/// What every AWS client of one instance shares: the region, the HTTP client (its threads and
/// kept connections), the retry rules, STS and the credentials, refreshed from the chain before
/// they expire. The KMS provider and the S3 store each make one from the instance's settings.
public final class AWSSession: Sendable {
    public let instance: String
    public let region: String
    public let environment: CredentialEnvironment
    public let http: HTTPClient
    public let requester: AWSRequester
    public let stsEndpoint: Endpoint
    public let sts: STSClient
    public let credentials: CredentialCache
    public let useFIPSEndpoint: Bool

    /// Resolves the region and the STS endpoint (a missing region is an error); credentials are
    /// fetched on first use, so a metadata service that is slow to come up does not stop start-up.
    public static func make(instance: String, settings: AWSSettings, environment: [String: String],
                            logger: Logger) async throws(AWSSetupError) -> AWSSession {
        let http = HTTPClient(threads: min(64, max(2, settings.concurrency)))
        let credentialEnvironment = CredentialEnvironment(variables: environment, profileSetting: settings.profile)
        let region = try await AWSRegion.resolve(setting: settings.region, environment: credentialEnvironment, http: http, instance: instance)
        let stsEndpoint = try endpoint(settings.stsEndpointURL, setting: "sts_endpoint_url", variable: "AWS_ENDPOINT_URL_STS", service: "sts",
                                       region: region, fips: settings.useFIPSEndpoint, environment: credentialEnvironment)
        return AWSSession(instance: instance, region: region, environment: credentialEnvironment, http: http, settings: settings,
                          stsEndpoint: stsEndpoint, logger: logger)
    }

    private init(instance: String, region: String, environment: CredentialEnvironment, http: HTTPClient, settings: AWSSettings,
                 stsEndpoint: Endpoint, logger: Logger) {
        self.instance = instance
        self.region = region
        self.environment = environment
        self.http = http
        self.stsEndpoint = stsEndpoint
        self.useFIPSEndpoint = settings.useFIPSEndpoint
        let requester = AWSRequester(http: http, timeoutMilliseconds: settings.requestTimeoutMilliseconds,
                                     maxRetries: settings.maxRetries, logger: logger)
        self.requester = requester
        let sts = STSClient(requester: requester, endpoint: stsEndpoint, region: region)
        self.sts = sts
        let chain = CredentialChain(environment: environment, sts: sts, http: http, logger: logger)
        self.credentials = CredentialCache(logger: logger) { () throws(AWSError) in try await chain.resolve() }
    }

    /// The credentials as a requester uses them: fetched from the cache, dropped when AWS says they expired.
    public var requestCredentials: AWSRequester.Credentials {
        let cache = credentials
        return AWSRequester.Credentials(get: { () throws(AWSError) in try await cache.get() }, invalidate: { await cache.invalidate() })
    }

    /// A service's endpoint: the setting, else AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL,
    /// else the public endpoint in the region.
    public func endpoint(_ explicit: String?, setting: String, variable: String, service: String) throws(AWSSetupError) -> Endpoint {
        try Self.endpoint(explicit, setting: setting, variable: variable, service: service, region: region, fips: useFIPSEndpoint,
                          environment: environment)
    }

    static func endpoint(_ explicit: String?, setting: String, variable: String, service: String, region: String, fips: Bool,
                         environment: CredentialEnvironment) throws(AWSSetupError) -> Endpoint {
        if let text = explicit ?? environment[variable] ?? environment["AWS_ENDPOINT_URL"] {
            guard let parsed = Endpoint(parsing: text) else {
                throw AWSSetupError(setting: setting, message: "\(text) is not an http:// or https:// URL")
            }
            return parsed
        }
        guard let parsed = Endpoint.aws(service: service, region: region, fips: fips) else {
            throw AWSSetupError(setting: "region", message: "region \"\(region)\" does not make a valid endpoint name")
        }
        return parsed
    }
}
