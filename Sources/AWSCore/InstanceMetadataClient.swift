/// EC2 instance metadata with IMDSv2 session tokens: credentials of the instance's role, and its
/// region. AWS_EC2_METADATA_SERVICE_ENDPOINT moves it (tests), AWS_EC2_METADATA_DISABLED=true turns it off.
public struct InstanceMetadataClient: Sendable {
    public let environment: CredentialEnvironment
    public let http: HTTPClient


    public var endpoint: String? {
        if environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" { return nil }
        var base = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254"
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    /// Seconds from the environment, clamped to 1...60 so a typo cannot overflow or hang start-up.
    private var metadataTimeoutMilliseconds: Int {
        min(max(environment["AWS_METADATA_SERVICE_TIMEOUT"].flatMap { Int($0) } ?? 1, 1), 60) * 1000
    }

    private var metadataAttempts: Int {
        min(max(environment["AWS_METADATA_SERVICE_NUM_ATTEMPTS"].flatMap { Int($0) } ?? 1, 1), 10)
    }

    /// An IMDSv2 session token; nil when no metadata service answers (not on EC2).
    public func token() async -> String? {
        guard let base = endpoint else { return nil }
        for _ in 0..<max(1, metadataAttempts) {
            guard let response = try? await http.send(HTTPRequest(
                method: "PUT", url: "\(base)/latest/api/token", headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                body: [], timeoutMilliseconds: metadataTimeoutMilliseconds, bypassProxy: true))
            else { continue }
            guard response.status == 200 else { return nil }
            return response.body.text.trimmingCharacters(in: [" ", "\n", "\r"])
        }
        return nil
    }

    public func credentials() async throws(AWSError) -> AWSCredentials? {
        guard let base = endpoint, let token = await token() else { return nil }
        let headers = [("X-aws-ec2-metadata-token", token)]
        let listing = try await http.metadataGet(url: "\(base)/latest/meta-data/iam/security-credentials/", headers: headers,
                                            what: "EC2 instance metadata service", attempts: metadataAttempts + 1,
                                            timeoutMilliseconds: metadataTimeoutMilliseconds)
        guard let role = listing.text.split(whereSeparator: \.isNewline).first.map({ String($0).trimmingCharacters(in: [" ", "\r"]) }), !role.isEmpty else {
            throw CredentialChain.failure("the EC2 instance has no IAM role attached (instance metadata lists none); attach a role with access to the master key")
        }
        let document = try await http.metadataGet(url: "\(base)/latest/meta-data/iam/security-credentials/\(role)", headers: headers,
                                             what: "EC2 instance metadata service", attempts: metadataAttempts + 1,
                                             timeoutMilliseconds: metadataTimeoutMilliseconds)
        return try document.withBytes { (bytes) throws(AWSError) -> AWSCredentials in
            try CredentialChain.parseCredentialDocument(bytes, what: "the EC2 instance metadata credentials of role \(role)", tokenKey: "Token",
                                             label: "EC2 instance metadata, role \(role)")
        }
    }

    /// The region of the EC2 instance, from IMDSv2; nil when not on EC2.
    public func region() async -> String? {
        guard let base = endpoint, let token = await token() else { return nil }
        guard let body = try? await http.metadataGet(url: "\(base)/latest/meta-data/placement/region", headers: [("X-aws-ec2-metadata-token", token)],
                                                what: "EC2 instance metadata service", attempts: 1, timeoutMilliseconds: metadataTimeoutMilliseconds)
        else { return nil }
        let region = body.text.trimmingCharacters(in: [" ", "\n", "\r"])
        return region.isEmpty ? nil : region
    }
}

extension HTTPClient {
    /// GET with a few quick attempts; transport failures and non-200 answers are transient errors.
    public func metadataGet(url: String, method: String = "GET", headers: [(String, String)], what: String,
                             attempts: Int, timeoutMilliseconds: Int) async throws(AWSError) -> ResponseBody {
        var lastError = ""
        for attempt in 0..<max(1, attempts) {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(100 << attempt)) }
            do {
                let response = try await send(HTTPRequest(method: method, url: url, headers: headers, body: [],
                                                               timeoutMilliseconds: timeoutMilliseconds, bypassProxy: true))
                if response.status == 200 { return response.body }
                lastError = "HTTP \(response.status): \(AWSRequester.oneLine(String(response.body.text.prefix(200))))"
                if (400..<500).contains(response.status) && response.status != 429 { break }
            } catch {
                lastError = error.message
            }
        }
        throw CredentialChain.failure("the \(what) (\(url)) failed: \(lastError)", transient: true)
    }
}
