import AWSCore
import ProviderSettings

/// The three S3 calls a key store needs (REST, SigV4 with a signed payload hash): GetObject,
/// PutObject only if absent (`If-None-Match: *`, S3's atomic create) and ListObjectsV2. Path-style
/// addressing (`/bucket/key`) when an endpoint URL is given (S3-compatible stores, tests) or the
/// bucket name has dots; otherwise virtual-hosted (`bucket.s3.region.amazonaws.com/key`).
public struct S3Client: Sendable {
    public let bucket: String
    public let endpoint: Endpoint
    public let pathStyle: Bool
    let session: AWSSession
    let credentials: AWSRequester.Credentials

    public init(bucket: String, endpointURL: String?, session: AWSSession) throws(AWSSetupError) {
        self.bucket = bucket
        self.session = session
        self.credentials = session.requestCredentials
        if let endpointURL {
            guard let parsed = Endpoint(parsing: endpointURL) else {
                throw AWSSetupError(setting: "store_endpoint_url", message: "\(endpointURL) is not an http:// or https:// URL")
            }
            endpoint = parsed
            pathStyle = true
        } else if bucket.contains(".") {
            endpoint = try session.endpoint(nil, setting: "store", variable: "AWS_ENDPOINT_URL_S3", service: "s3")
            pathStyle = true
        } else if let explicit = session.environment["AWS_ENDPOINT_URL_S3"] ?? session.environment["AWS_ENDPOINT_URL"] {
            endpoint = try session.endpoint(explicit, setting: "store_endpoint_url", variable: "AWS_ENDPOINT_URL_S3", service: "s3")
            pathStyle = true
        } else {
            let suffix = session.region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
            let service = session.useFIPSEndpoint ? "s3-fips" : "s3"
            guard let parsed = Endpoint(parsing: "https://\(bucket).\(service).\(session.region).\(suffix)/") else {
                throw AWSSetupError(setting: "store", message: "bucket \"\(bucket)\" in region \(session.region) does not make a valid endpoint name")
            }
            endpoint = parsed
            pathStyle = false
        }
    }

    var signer: SigV4Signer { SigV4Signer(region: session.region, service: "s3") }

    var addressing: S3Addressing { S3Addressing(bucket: bucket, endpoint: endpoint, pathStyle: pathStyle) }

    private func send(_ call: AWSRequester.Call, accepted: Set<Int> = []) async throws(AWSError) -> HTTPResponse {
        try await session.requester.send(call, signer: signer, protocol: .query, credentials: credentials, accepted: accepted)
    }

    /// The object's bytes, or nil when there is no such object.
    public func getObject(_ key: String) async throws(AWSError) -> [UInt8]? {
        let response = try await send(addressing.getObject(key), accepted: [404])
        if response.status == 404 {
            // A missing bucket is a setup problem, not an absent key.
            let code = response.body.withBytes { XMLText.first("Code", in: $0) }
            if code != nil && code != "NoSuchKey" {
                throw AWSRequester.serviceError(operation: "S3 GetObject", response: response, protocol: .query)
            }
            return nil
        }
        return response.body.withBytes { Array($0) }
    }

    /// Creates the object if no object has that key; false when one is already there (HTTP 412).
    public func putObjectIfAbsent(_ key: String, bytes: [UInt8]) async throws(AWSError) -> Bool {
        let response = try await send(addressing.putObjectIfAbsent(key, bytes: bytes), accepted: [412])
        return response.status != 412
    }

    /// Every key under `prefix` with its LastModified (Unix milliseconds, when given), following
    /// continuation tokens.
    public func listObjects(prefix: String) async throws(AWSError) -> [(key: String, lastModified: Int64?)] {
        var keys: [(key: String, lastModified: Int64?)] = []
        var token: String?
        repeat {
            let response = try await send(addressing.listObjects(prefix: prefix, continuationToken: token))
            let page = response.body.withBytes { S3Listing(parsing: $0) }
            keys += page.keys.map { ($0, page.lastModified[$0]) }
            token = page.isTruncated ? page.nextContinuationToken : nil
            if page.isTruncated && token == nil {
                throw AWSError(.malformed, operation: "S3 ListObjectsV2", message: "a truncated listing without NextContinuationToken")
            }
        } while token != nil
        return keys
    }
}
