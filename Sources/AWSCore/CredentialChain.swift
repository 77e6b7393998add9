import Glibc
import Logging
import ProviderSettings
import SecureMemory
import SystemSupport

/// The AWS SDKs' default credential chain, in their order, with one addition:
///
/// 1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
/// 2. `$CREDENTIALS_DIRECTORY/aws-credentials` (systemd LoadCredential=), read as a shared
///    credentials file — right after the environment, because a credential handed to this one
///    service by its unit is more specific than anything the machine offers to every process
/// 3. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN → STS AssumeRoleWithWebIdentity
/// 4. shared files (AWS_SHARED_CREDENTIALS_FILE or AWS_CREDENTIAL_PROFILES_FILE, AWS_CONFIG_FILE; profile from the `profile`
///    setting or AWS_PROFILE): static keys, role_arn + source_profile / credential_source /
///    web_identity_token_file → STS, credential_process
/// 5. container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI (+ AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
/// 6. EC2 instance metadata, IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED)
///
/// A source that is not configured is skipped; one that is configured but fails stops the chain
/// with its error (as the SDKs do), so a broken setup is reported rather than papered over.
public final class CredentialChain: Sendable {
    public let environment: CredentialEnvironment
    public let sts: STSClient
    public let http: HTTPClient
    public let imds: InstanceMetadataClient
    public let logger: Logger

    public init(environment: CredentialEnvironment, sts: STSClient, http: HTTPClient, logger: Logger) {
        self.environment = environment
        self.sts = sts
        self.http = http
        self.imds = InstanceMetadataClient(environment: environment, http: http)
        self.logger = logger
    }

    public func resolve() async throws(AWSError) -> AWSCredentials {
        if let credentials = try environmentCredentials() { return credentials }
        if let profiles = try environment.systemdProfiles() {
            let name = environment.profileName
            guard profiles.hasProfile(name) else {
                throw Self.failure("\(profiles.paths) has no [\(name)] section; add it, or change the profile setting / AWS_PROFILE")
            }
            if let credentials = try await profileCredentials(profiles, profile: name, visited: [], sourceLabel: "systemd credential aws-credentials") {
                return credentials
            }
            throw Self.failure("[\(name)] in \(profiles.paths) has no aws_access_key_id/aws_secret_access_key, role_arn or credential_process")
        }
        if let credentials = try await webIdentityCredentials(tokenFile: environment["AWS_WEB_IDENTITY_TOKEN_FILE"], roleARN: environment["AWS_ROLE_ARN"],
                                                             sessionName: environment["AWS_ROLE_SESSION_NAME"]) {
            return credentials
        }
        let shared = try environment.sharedProfiles()
        let name = environment.profileName
        if shared.hasProfile(name) {
            if let credentials = try await profileCredentials(shared, profile: name, visited: [], sourceLabel: "shared files") {
                return credentials
            }
        } else if environment.profileIsExplicit {
            let where_ = shared.isEmpty ? "no shared config or credentials file exists (looked for \(environment.credentialsPath ?? "~/.aws/credentials") and \(environment.configPath ?? "~/.aws/config"))" : "it is not in \(shared.paths)"
            throw Self.failure("AWS profile \"\(name)\" is named (profile setting or AWS_PROFILE) but \(where_)")
        }
        if let credentials = try await containerCredentials() { return credentials }
        if let credentials = try await instanceMetadataCredentials() { return credentials }
        throw Self.failure("no AWS credentials found: tried AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, $CREDENTIALS_DIRECTORY/aws-credentials, AWS_WEB_IDENTITY_TOKEN_FILE, profile \"\(name)\" in the shared files, container credentials and EC2 instance metadata")
    }

    public static func failure(_ message: String, transient: Bool = false) -> AWSError {
        AWSError(.credentials, operation: "credentials", message: message, transient: transient)
    }

    /// A token file's text, trimmed; nil when it does not exist. A file that cannot be read fails
    /// as retryable: the tokens are files something else rotates (the kubelet, an ECS agent), and
    /// a read that failed now may work at the next try.
    static func tokenText(path: String) throws(AWSError) -> String? {
        do {
            return try SecretFile.readText(path: path)
        } catch {
            throw failure(error.description, transient: true)
        }
    }

    // MARK: 1. Environment

    public func environmentCredentials() throws(AWSError) -> AWSCredentials? {
        let keyID = environment["AWS_ACCESS_KEY_ID"]
        let secret = environment["AWS_SECRET_ACCESS_KEY"]
        switch (keyID, secret) {
        case (nil, nil):
            return nil
        case let (keyID?, secret?):
            return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret,
                                  sessionToken: environment["AWS_SESSION_TOKEN"] ?? environment["AWS_SECURITY_TOKEN"], source: "environment")
        default:
            throw Self.failure("only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both or neither")
        }
    }

    // MARK: 3. Web identity

    public func webIdentityCredentials(tokenFile: String?, roleARN: String?, sessionName: String?) async throws(AWSError) -> AWSCredentials? {
        guard let tokenFile else { return nil }
        guard let roleARN else { throw Self.failure("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set the role to assume") }
        guard let token = try Self.tokenText(path: tokenFile), !token.isEmpty else {
            throw Self.failure("the web identity token file \(tokenFile) is missing or empty", transient: true)
        }
        return try await sts.assumeRoleWithWebIdentity(roleARN: roleARN, sessionName: sessionName ?? Self.sessionName(), token: token)
    }

    public static func sessionName() -> String { "keybroker-\(unixNow())" }

    // MARK: 4. Profiles

    public func profileCredentials(_ profiles: ProfileSet, profile: String, visited: Set<String>, sourceLabel: String) async throws(AWSError) -> AWSCredentials? {
        guard !visited.contains(profile) else {
            throw Self.failure("AWS profile \"\(profile)\" is part of a source_profile loop in \(profiles.paths)")
        }
        let label = "profile \(profile) (\(sourceLabel))"
        if let roleARN = profiles.value("role_arn", profile: profile) {
            let base: AWSCredentials
            if let source = profiles.value("source_profile", profile: profile) {
                if source == profile {
                    guard let own = staticCredentials(profiles, profile: profile, label: label) else {
                        throw Self.failure("AWS profile \"\(profile)\" names itself as source_profile but has no keys")
                    }
                    base = own
                } else {
                    guard profiles.hasProfile(source) else {
                        throw Self.failure("AWS profile \"\(profile)\" has source_profile = \(source), which is not in \(profiles.paths)")
                    }
                    guard let sourced = try await profileCredentials(profiles, profile: source, visited: visited.union([profile]), sourceLabel: sourceLabel) else {
                        throw Self.failure("AWS profile \"\(source)\" (source_profile of \"\(profile)\") has no credentials")
                    }
                    base = sourced
                }
            } else if let source = profiles.value("credential_source", profile: profile) {
                let found: AWSCredentials?
                switch source {
                case "Environment": found = try environmentCredentials()
                case "Ec2InstanceMetadata": found = try await instanceMetadataCredentials()
                case "EcsContainer": found = try await containerCredentials()
                default: throw Self.failure("AWS profile \"\(profile)\": credential_source must be Environment, Ec2InstanceMetadata or EcsContainer, not \(source)")
                }
                guard let found else { throw Self.failure("AWS profile \"\(profile)\": credential_source \(source) has no credentials") }
                base = found
            } else if let tokenFile = profiles.value("web_identity_token_file", profile: profile) {
                return try await webIdentityCredentials(tokenFile: tokenFile, roleARN: roleARN, sessionName: profiles.value("role_session_name", profile: profile))
            } else {
                throw Self.failure("AWS profile \"\(profile)\" has role_arn but no source_profile, credential_source or web_identity_token_file")
            }
            let duration = profiles.value("duration_seconds", profile: profile).flatMap { Int($0) }
            var assumed = try await sts.assumeRole(roleARN: roleARN, sessionName: profiles.value("role_session_name", profile: profile) ?? Self.sessionName(),
                                                   externalID: profiles.value("external_id", profile: profile), durationSeconds: duration, using: base)
            assumed.source = "\(label), role \(roleARN)"
            return assumed
        }
        if let credentials = staticCredentials(profiles, profile: profile, label: label) { return credentials }
        if let command = profiles.value("credential_process", profile: profile) {
            return try await processCredentials(command: command, label: label)
        }
        return nil
    }

    private func staticCredentials(_ profiles: ProfileSet, profile: String, label: String) -> AWSCredentials? {
        guard let keyID = profiles.value("aws_access_key_id", profile: profile),
              let secret = profiles.secret("aws_secret_access_key", profile: profile)
        else { return nil }
        return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: profiles.value("aws_session_token", profile: profile),
                              expiration: nil, source: label)
    }

    /// `credential_process`: runs the command with /bin/sh and reads its JSON from stdout.
    public func processCredentials(command: String, label: String) async throws(AWSError) -> AWSCredentials {
        struct Output: Sendable {
            public var status: Int32
            public var bytes: SecureBytes
        }
        let output: Output
        do {
            output = try await http.runBlocking { () throws -> Output in
                guard let pipe = popen(command, "re") else {
                    throw Self.failure("cannot run credential_process \"\(command)\": \(errnoText(errno))")
                }
                var buffer = [UInt8](repeating: 0, count: 65536)
                defer { buffer.cleanse() }
                var count = 0
                while count < buffer.count {
                    let n = buffer.withUnsafeMutableBytes { raw in
                        raw.baseAddress.map { fread($0 + count, 1, raw.count - count, pipe) } ?? 0
                    }
                    if n <= 0 { break }
                    count += n
                }
                let status = pclose(pipe)
                let bytes = buffer.withUnsafeBytes { raw in
                    SecureBytes(count: count) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<count])) }
                }
                return Output(status: status, bytes: bytes)
            }
        } catch let error as AWSError {
            throw error
        } catch {
            throw Self.failure("cannot run credential_process \"\(command)\": \(error)", transient: true)
        }
        guard output.status == 0 else {
            let code = (output.status >> 8) & 0xFF
            throw Self.failure("credential_process \"\(command)\" of \(label) exited with status \(code)", transient: true)
        }
        var credentials = try output.bytes.withUnsafeBytes { (bytes) throws(AWSError) -> AWSCredentials in
            try Self.parseCredentialDocument(bytes, what: "the output of credential_process \"\(command)\"", tokenKey: "SessionToken", label: label)
        }
        credentials.source = "\(label), credential_process"
        return credentials
    }

    /// The JSON document of credential_process, the container endpoint and IMDS.
    public static func parseCredentialDocument(_ bytes: UnsafeRawBufferPointer, what: String, tokenKey: String, label: String) throws(AWSError) -> AWSCredentials {
        let reader: JSONReader
        do throws(JSONReader.Failure) { reader = try JSONReader(bytes: bytes) } catch {
            throw failure("\(what) is not JSON: \(error.description)", transient: true)
        }
        if let code = reader.string(reader.member("Code")), code != "Success" {
            throw failure("\(what) reports \(code): \(reader.string(reader.member("Message")) ?? "no message")", transient: true)
        }
        guard let keyID = reader.string(reader.member("AccessKeyId")), let secret = reader.secret(reader.member("SecretAccessKey")) else {
            throw failure("\(what) lacks AccessKeyId or SecretAccessKey", transient: true)
        }
        let token = reader.string(reader.member(tokenKey)) ?? reader.string(reader.member("Token"))
        let expiration = reader.string(reader.member("Expiration")).flatMap(CivilTime.parseISO8601)
        return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: token, expiration: expiration, source: label)
    }

    // MARK: 5. Container

    public func containerCredentials() async throws(AWSError) -> AWSCredentials? {
        let url: String
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] {
            url = "http://169.254.170.2" + (relative.hasPrefix("/") ? relative : "/" + relative)
        } else if let full = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
            guard let endpoint = Endpoint(parsing: full) else {
                throw Self.failure("AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL: \(full)")
            }
            if !endpoint.isHTTPS {
                let host = endpoint.host.split(separator: ":").first.map(String.init) ?? endpoint.host
                let allowed = host.hasPrefix("127.") || host == "localhost" || host == "[::1]" || host == "169.254.170.2"
                    || host == "169.254.170.23" || endpoint.host.hasPrefix("[fd00:ec2::23]")
                guard allowed else {
                    throw Self.failure("AWS_CONTAINER_CREDENTIALS_FULL_URI must use https, or http to a loopback or the ECS/EKS agent address, not \(full)")
                }
            }
            url = full
        } else {
            return nil
        }
        var headers: [(String, String)] = [("Accept", "application/json")]
        if let tokenFile = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] {
            guard let token = try Self.tokenText(path: tokenFile) else {
                throw Self.failure("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(tokenFile) does not exist", transient: true)
            }
            headers.append(("Authorization", token))
        } else if let token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] {
            headers.append(("Authorization", token))
        }
        let body = try await http.metadataGet(url: url, headers: headers, what: "container credentials endpoint", attempts: 3, timeoutMilliseconds: 2000)
        return try body.withBytes { (bytes) throws(AWSError) -> AWSCredentials in
            try Self.parseCredentialDocument(bytes, what: "the container credentials endpoint's answer", tokenKey: "Token", label: "container credentials")
        }
    }

    public func instanceMetadataCredentials() async throws(AWSError) -> AWSCredentials? {
        try await imds.credentials()
    }
}
