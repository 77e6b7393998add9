import ProviderSettings

extension Endpoint {
    /// The public endpoint of `service` in `region` (`kms`, `kms-fips`, `sts`, …).
    public static func aws(service: String, region: String, fips: Bool) -> Endpoint? {
        let suffix = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
        return Endpoint(parsing: "https://\(service)\(fips ? "-fips" : "").\(region).\(suffix)/")
    }
}
