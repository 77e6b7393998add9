/// Where an instance keeps its wrapped data keys (`store` in `[instances.NAME]`).
public enum StoreSettings: Sendable, Equatable {
    /// `state_dir/<instance>`, the embedded default.
    case local
    /// A bucket many brokers share; `state_dir/<instance>` is its write-through cache.
    case s3(S3StoreSettings)
}

/// `store = "s3://BUCKET/PREFIX"` with its companions. Objects are `PREFIX/INSTANCE/<key file name>`.
public struct S3StoreSettings: Sendable, Equatable {
    public var bucket: String
    /// Without leading or trailing "/"; may be empty (objects then start with the instance name).
    public var prefix: String
    /// `store_endpoint_url`: an S3-compatible service (MinIO, Ceph RGW, a test server); path-style addressing.
    public var endpointURL: String?
    /// `store_refresh_ms`: how often other brokers' new versions are looked for.
    public var refreshMilliseconds: Int
    /// The instance's `region` (for every provider once a store is set); nil: the AWS chain decides.
    public var region: String?
    /// The aws provider's `profile`, so the store uses the same credentials as KMS.
    public var profile: String?
    public var requestTimeoutMilliseconds: Int
    public var maxRetries: Int

    public static let defaultRefreshMilliseconds = 30_000

    public init(bucket: String, prefix: String, endpointURL: String? = nil, refreshMilliseconds: Int = Self.defaultRefreshMilliseconds,
                region: String? = nil, profile: String? = nil, requestTimeoutMilliseconds: Int = 5000, maxRetries: Int = 3) {
        self.bucket = bucket
        self.prefix = prefix
        self.endpointURL = endpointURL
        self.refreshMilliseconds = refreshMilliseconds
        self.region = region
        self.profile = profile
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.maxRetries = maxRetries
    }

    /// `s3://bucket[/prefix]`, bucket named by S3's rules, prefix of letters, digits and `-_./`
    /// without empty, "." or ".." segments. Returns why not when it is not one.
    public static func parse(_ url: String) -> Result<(bucket: String, prefix: String), S3URLError> {
        guard url.hasPrefix("s3://") else { return .failure(S3URLError("must be an s3://BUCKET/PREFIX URL (or absent for the local state_dir), not \"\(url)\"")) }
        var rest = Substring(url.dropFirst(5))
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        let bucket = String(rest.prefix { $0 != "/" })
        let prefix = String(rest.dropFirst(bucket.count).drop { $0 == "/" })
        guard isValidBucket(bucket) else {
            return .failure(S3URLError("\"\(bucket)\" is not an S3 bucket name (3 to 63 lower-case letters, digits, \".\" and \"-\", starting and ending with a letter or digit)"))
        }
        if !prefix.isEmpty {
            let allowed = prefix.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || [UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/")].contains(byte)
            }
            let segments = prefix.split(separator: "/", omittingEmptySubsequences: false)
            guard allowed, prefix.utf8.count <= 512, !segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                return .failure(S3URLError("the prefix \"\(prefix)\" may use letters, digits, \"-\", \"_\", \".\" and \"/\" (no empty, \".\" or \"..\" parts, up to 512)"))
            }
        }
        return .success((bucket, prefix))
    }

    public static func isValidBucket(_ name: String) -> Bool {
        guard (3...63).contains(name.utf8.count), let first = name.utf8.first, let last = name.utf8.last else { return false }
        func alnum(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        return alnum(first) && alnum(last) && !name.contains("..")
            && name.utf8.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    /// The store as written in the configuration.
    public var url: String { "s3://\(bucket)\(prefix.isEmpty ? "" : "/" + prefix)" }
}

public struct S3URLError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
