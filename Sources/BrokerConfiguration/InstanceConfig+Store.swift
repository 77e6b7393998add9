import ProviderSettings
import TOMLKit

extension InstanceConfig {
    static let storeKeys = ["store", "store_endpoint_url", "store_refresh_ms"]

    /// `store`, `store_endpoint_url`, `store_refresh_ms` and, with a store, `region` for every
    /// provider. Read before the provider's table, which then no longer sees `region` as foreign.
    static func parseStore(_ reader: inout TableReader, table: TOMLTable, provider: String) throws(ConfigError) -> StoreSettings {
        guard let url = try reader.string("store") else {
            for key in storeKeys where table.contains(key: key) {
                throw reader.error(key, "applies only with store = \"s3://BUCKET/PREFIX\"; without store the keys stay in state_dir")
            }
            return .local
        }
        let location: (bucket: String, prefix: String)
        switch S3StoreSettings.parse(url) {
        case let .success(parsed): location = parsed
        case let .failure(error): throw reader.error("store", error.description)
        }
        var settings = S3StoreSettings(bucket: location.bucket, prefix: location.prefix)
        if let endpoint = try reader.string("store_endpoint_url") {
            guard Endpoint(parsing: endpoint) != nil else {
                throw reader.error("store_endpoint_url", "\"\(endpoint)\" is not an http:// or https:// URL")
            }
            settings.endpointURL = endpoint
        }
        if let refresh = try reader.integer("store_refresh_ms", in: 100...86_400_000) { settings.refreshMilliseconds = refresh }
        // The aws provider reads region itself (it is the KMS region too); the others take it here.
        if provider != "aws", let region = try reader.string("region") {
            guard AWSSettings.isValidRegion(region) else {
                throw reader.error("region", "\"\(region)\" is not a region name (lower-case letters, digits and \"-\", like us-east-1)")
            }
            settings.region = region
        }
        return .s3(settings)
    }

    /// The aws provider's region, profile, timeout and retries serve its store as well.
    static func storeWithAWS(_ store: StoreSettings, _ aws: AWSSettings) -> StoreSettings {
        guard case var .s3(settings) = store else { return store }
        settings.region = aws.region
        settings.profile = aws.profile
        settings.requestTimeoutMilliseconds = aws.requestTimeoutMilliseconds
        settings.maxRetries = aws.maxRetries
        return .s3(settings)
    }
}
