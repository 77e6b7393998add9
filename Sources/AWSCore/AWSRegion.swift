import ProviderSettings

/// Which AWS region an instance's calls go to, found as the SDKs find it.
public enum AWSRegion {
    /// The instance's `region` setting, AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`,
    /// EC2 instance metadata; a name that is not a region is an error naming where it came from.
    public static func resolve(setting: String?, environment: CredentialEnvironment, http: HTTPClient,
                               instance: String) async throws(AWSSetupError) -> String {
        func checked(_ region: String, _ source: String) throws(AWSSetupError) -> String {
            guard AWSSettings.isValidRegion(region) else {
                throw AWSSetupError(setting: "region", message: "region \"\(region)\" from \(source) is not a region name (like us-east-1)")
            }
            return region
        }
        if let region = setting { return try checked(region, "the region setting") }
        if let region = environment["AWS_REGION"] { return try checked(region, "AWS_REGION") }
        if let region = environment["AWS_DEFAULT_REGION"] { return try checked(region, "AWS_DEFAULT_REGION") }
        do {
            if let profiles = try environment.systemdProfiles(), let region = profiles.value("region", profile: environment.profileName) {
                return try checked(region, "profile \(environment.profileName) in \(profiles.paths)")
            }
            let shared = try environment.sharedProfiles()
            if let region = shared.value("region", profile: environment.profileName) {
                return try checked(region, "profile \(environment.profileName) in \(shared.paths)")
            }
        } catch let error as AWSSetupError {
            throw error
        } catch {
            throw AWSSetupError(setting: "region", message: "\(error)")
        }
        if let region = await InstanceMetadataClient(environment: environment, http: http).region() {
            return try checked(region, "EC2 instance metadata")
        }
        throw AWSSetupError(setting: "region", message: "no AWS region is configured: set region = \"us-east-1\" (for example) in [instances.\(instance)], or AWS_REGION, or region in the AWS profile \"\(environment.profileName)\"; the EC2 instance metadata service did not answer either")
    }
}
