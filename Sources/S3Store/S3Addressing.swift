import AWSCore
import ProviderSettings

/// Where one bucket's requests go and how they are written: the endpoint, path-style
/// (`/bucket/key`) or virtual-hosted (`bucket.s3.region.amazonaws.com/key`), each path segment and
/// query value URI-encoded once as S3's SigV4 wants, the payload's SHA-256 in
/// `x-amz-content-sha256`. No I/O, so the signature tests sign exactly what the client sends.
public struct S3Addressing: Sendable {
    public let bucket: String
    public let endpoint: Endpoint
    public let pathStyle: Bool

    public init(bucket: String, endpoint: Endpoint, pathStyle: Bool) {
        self.bucket = bucket
        self.endpoint = endpoint
        self.pathStyle = pathStyle
    }

    /// The URI-encoded path of an object (or of the bucket, for `key` nil), as sent and signed.
    func path(_ key: String?) -> String {
        let base = pathStyle ? "/" + SigV4Signer.percentEncode(bucket) : ""
        guard let key else { return pathStyle ? base : "/" }
        return base + "/" + key.split(separator: "/", omittingEmptySubsequences: false).map { SigV4Signer.percentEncode(String($0)) }
            .joined(separator: "/")
    }

    public func call(operation: String, method: String, key: String?, query: [(String, String)] = [],
                     headers: [(String, String)] = [], body: [UInt8] = []) -> AWSRequester.Call {
        let encoded: [(name: String, value: String)] = query.map { (SigV4Signer.percentEncode($0.0), SigV4Signer.percentEncode($0.1)) }
        let sorted = encoded.sorted { (a: (name: String, value: String), b: (name: String, value: String)) -> Bool in
            a.name == b.name ? a.value < b.value : a.name < b.name
        }
        let canonicalQuery = sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        return AWSRequester.Call(operation: "S3 \(operation)", method: method, endpoint: endpoint, path: path(key), query: canonicalQuery,
                                 headers: headers + [("x-amz-content-sha256", SigV4Signer.hexSHA256(body))], body: body)
    }

    public func getObject(_ key: String) -> AWSRequester.Call {
        call(operation: "GetObject", method: "GET", key: key)
    }

    /// `If-None-Match: *`: S3 creates the object only if no object has that key (else HTTP 412).
    public func putObjectIfAbsent(_ key: String, bytes: [UInt8]) -> AWSRequester.Call {
        call(operation: "PutObject", method: "PUT", key: key,
             headers: [("Content-Type", "application/octet-stream"), ("If-None-Match", "*")], body: bytes)
    }

    public func listObjects(prefix: String, continuationToken: String?) -> AWSRequester.Call {
        var query = [("list-type", "2"), ("prefix", prefix)]
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        return call(operation: "ListObjectsV2", method: "GET", key: nil, query: query)
    }

    /// The call signed at `time`, for tests that compare the signature with another signer's.
    public func signed(_ call: AWSRequester.Call, region: String, credentials: AWSCredentials, time: Int64) -> (url: String, signed: SigV4Signer.Signed) {
        let signed = SigV4Signer(region: region, service: "s3").sign(method: call.method, path: call.path, query: call.query,
                                                                   headers: [("Host", endpoint.host)] + call.headers, body: call.body,
                                                                   credentials: credentials, time: time)
        return (call.url, signed)
    }
}
