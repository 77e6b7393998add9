/// Where the chain looks, fixed at start-up from the environment and the instance settings.
struct CredentialEnvironment: Sendable {
    var variables: [String: String]
    /// The `profile` setting, else AWS_PROFILE, else "default".
    var profileName: String
    /// True when a profile was named (setting or AWS_PROFILE): then it must exist.
    var profileIsExplicit: Bool

    init(variables: [String: String], profileSetting: String?) {
        self.variables = variables
        if let name = profileSetting ?? variables["AWS_PROFILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            profileName = name
            profileIsExplicit = true
        } else {
            profileName = "default"
            profileIsExplicit = false
        }
    }

    subscript(_ name: String) -> String? {
        guard let value = variables[name], !value.isEmpty else { return nil }
        return value
    }

    var home: String? { self["HOME"] }
    var configPath: String? { self["AWS_CONFIG_FILE"] ?? home.map { "\($0)/.aws/config" } }
    var credentialsPath: String? { self["AWS_SHARED_CREDENTIALS_FILE"] ?? home.map { "\($0)/.aws/credentials" } }
    /// systemd's LoadCredential=aws-credentials:… (read as a shared credentials file).
    var systemdCredentialsPath: String? { self["CREDENTIALS_DIRECTORY"].map { "\($0)/aws-credentials" } }

    /// The shared config and credentials files (credentials first: its settings win).
    func sharedProfiles() throws(AWSError) -> ProfileSet {
        var files: [ProfileFile] = []
        if let path = credentialsPath, let file = try ProfileFile.load(path: path, isConfig: false) { files.append(file) }
        if let path = configPath, let file = try ProfileFile.load(path: path, isConfig: true) { files.append(file) }
        return ProfileSet(files: files)
    }

    func systemdProfiles() throws(AWSError) -> ProfileSet? {
        guard let path = systemdCredentialsPath, let file = try ProfileFile.load(path: path, isConfig: false) else { return nil }
        return ProfileSet(files: [file])
    }
}
