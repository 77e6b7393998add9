/// Where the chain looks, fixed at start-up from the environment and the instance settings.
public struct CredentialEnvironment: Sendable {
    public var variables: [String: String]
    /// The `profile` setting, else AWS_PROFILE, else "default".
    public var profileName: String
    /// True when a profile was named (setting or AWS_PROFILE): then it must exist.
    public var profileIsExplicit: Bool

    public init(variables: [String: String], profileSetting: String?) {
        self.variables = variables
        if let name = profileSetting ?? variables["AWS_PROFILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            profileName = name
            profileIsExplicit = true
        } else {
            profileName = "default"
            profileIsExplicit = false
        }
    }

    public subscript(_ name: String) -> String? {
        guard let value = variables[name], !value.isEmpty else { return nil }
        return value
    }

    public var home: String? { self["HOME"] }
    public var configPath: String? { self["AWS_CONFIG_FILE"] ?? home.map { "\($0)/.aws/config" } }
    /// AWS_SHARED_CREDENTIALS_FILE (the SDKs' and CLI's name), else AWS_CREDENTIAL_PROFILES_FILE
    /// (the older name, which MariaDB's guide for aws_key_management gives), else ~/.aws/credentials.
    public var credentialsPath: String? {
        self["AWS_SHARED_CREDENTIALS_FILE"] ?? self["AWS_CREDENTIAL_PROFILES_FILE"] ?? home.map { "\($0)/.aws/credentials" }
    }
    /// systemd's LoadCredential=aws-credentials:… (read as a shared credentials file).
    public var systemdCredentialsPath: String? { self["CREDENTIALS_DIRECTORY"].map { "\($0)/aws-credentials" } }

    /// The shared config and credentials files (credentials first: its settings win).
    public func sharedProfiles() throws(AWSError) -> ProfileSet {
        var files: [ProfileFile] = []
        if let path = credentialsPath, let file = try ProfileFile.load(path: path, isConfig: false) { files.append(file) }
        if let path = configPath, let file = try ProfileFile.load(path: path, isConfig: true) { files.append(file) }
        return ProfileSet(files: files)
    }

    public func systemdProfiles() throws(AWSError) -> ProfileSet? {
        guard let path = systemdCredentialsPath, let file = try ProfileFile.load(path: path, isConfig: false) else { return nil }
        return ProfileSet(files: [file])
    }
}
