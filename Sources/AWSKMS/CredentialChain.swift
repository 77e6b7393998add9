import Glibc
import Logging
import ProviderSettings
import SecureMemory
import SystemSupport

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

/// The AWS SDKs' default credential chain, in their order, with one addition:
///
/// 1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
/// 2. `$CREDENTIALS_DIRECTORY/aws-credentials` (systemd LoadCredential=), read as a shared
///    credentials file — right after the environment, because a credential handed to this one
///    service by its unit is more specific than anything the machine offers to every process
/// 3. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN → STS AssumeRoleWithWebIdentity
/// 4. shared files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE; profile from the `profile`
///    setting or AWS_PROFILE): static keys, role_arn + source_profile / credential_source /
///    web_identity_token_file → STS, credential_process
/// 5. container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI (+ AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
/// 6. EC2 instance metadata, IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED)
///
/// A source that is not configured is skipped; one that is configured but fails stops the chain
/// with its error (as the SDKs do), so a broken setup is reported rather than papered over.
final class CredentialChain: Sendable {
    let environment: CredentialEnvironment
    let sts: STSClient
    let http: HTTPClient
    let imds: InstanceMetadataClient
    let logger: Logger

    init(environment: CredentialEnvironment, sts: STSClient, http: HTTPClient, logger: Logger) {
        self.environment = environment
        self.sts = sts
        self.http = http
        self.imds = InstanceMetadataClient(environment: environment, http: http)
        self.logger = logger
    }

    func resolve() async throws(AWSError) -> AWSCredentials {
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

    static func failure(_ message: String, transient: Bool = false) -> AWSError {
        AWSError(.credentials, operation: "credentials", message: message, transient: transient)
    }

    // MARK: 1. Environment

    func environmentCredentials() throws(AWSError) -> AWSCredentials? {
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

    func webIdentityCredentials(tokenFile: String?, roleARN: String?, sessionName: String?) async throws(AWSError) -> AWSCredentials? {
        guard let tokenFile else { return nil }
        guard let roleARN else { throw Self.failure("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set the role to assume") }
        let token: String
        do {
            guard let text = try SecretFile.readText(path: tokenFile), !text.isEmpty else {
                throw Self.failure("the web identity token file \(tokenFile) is missing or empty", transient: true)
            }
            token = text
        } catch let error as SecretFile.Failure {
            throw Self.failure(error.description, transient: true)
        } catch let error as AWSError {
            throw error
        } catch {
            throw Self.failure("\(error)")
        }
        return try await sts.assumeRoleWithWebIdentity(roleARN: roleARN, sessionName: sessionName ?? Self.sessionName(), token: token)
    }

    static func sessionName() -> String { "keybroker-\(unixNow())" }

    // MARK: 4. Profiles

    func profileCredentials(_ profiles: ProfileSet, profile: String, visited: Set<String>, sourceLabel: String) async throws(AWSError) -> AWSCredentials? {
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
    func processCredentials(command: String, label: String) async throws(AWSError) -> AWSCredentials {
        struct Output: Sendable {
            var status: Int32
            var bytes: SecureBytes
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
    static func parseCredentialDocument(_ bytes: UnsafeRawBufferPointer, what: String, tokenKey: String, label: String) throws(AWSError) -> AWSCredentials {
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

    func containerCredentials() async throws(AWSError) -> AWSCredentials? {
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
            do {
                guard let token = try SecretFile.readText(path: tokenFile) else {
                    throw Self.failure("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(tokenFile) does not exist", transient: true)
                }
                headers.append(("Authorization", token))
            } catch let error as SecretFile.Failure {
                throw Self.failure(error.description, transient: true)
            } catch let error as AWSError {
                throw error
            } catch {
                throw Self.failure("\(error)")
            }
        } else if let token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] {
            headers.append(("Authorization", token))
        }
        let body = try await http.metadataGet(url: url, headers: headers, what: "container credentials endpoint", attempts: 3, timeoutMilliseconds: 2000)
        return try body.withBytes { (bytes) throws(AWSError) -> AWSCredentials in
            try Self.parseCredentialDocument(bytes, what: "the container credentials endpoint's answer", tokenKey: "Token", label: "container credentials")
        }
    }

    func instanceMetadataCredentials() async throws(AWSError) -> AWSCredentials? {
        try await imds.credentials()
    }
}

/// EC2 instance metadata with IMDSv2 session tokens: credentials of the instance's role, and its
/// region. AWS_EC2_METADATA_SERVICE_ENDPOINT moves it (tests), AWS_EC2_METADATA_DISABLED=true turns it off.
struct InstanceMetadataClient: Sendable {
    let environment: CredentialEnvironment
    let http: HTTPClient


    var endpoint: String? {
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
    func token() async -> String? {
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

    func credentials() async throws(AWSError) -> AWSCredentials? {
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
    func region() async -> String? {
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
    func metadataGet(url: String, method: String = "GET", headers: [(String, String)], what: String,
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
