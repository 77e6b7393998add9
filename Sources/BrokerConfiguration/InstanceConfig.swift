import BrokerPolicy
import ProviderSettings
import TOMLKit

/// One `[instances.NAME]` table: a named set of data keys with its provider and its clients.
public struct InstanceConfig: Sendable {
    public enum KeySpec: String, Sendable {
        case aes128 = "AES_128"
        case aes256 = "AES_256"

        public var byteCount: Int { self == .aes128 ? 16 : 32 }
    }

    public enum MasterKeySource: Sendable, Equatable {
        case file(String)
        /// `$CREDENTIALS_DIRECTORY/NAME` (systemd LoadCredential=).
        case credential(String)
    }

    public enum Provider: Sendable, Equatable {
        case local(MasterKeySource)
        case aws(AWSSettings)
        case kmip(KMIPSettings)
    }

    /// Settings that belong to one provider only: named in the error when used with the other.
    static let localOnlyKeys = ["master_key_file", "master_key_credential"]
    static let awsOnlyKeys = ["master_key_id", "region", "endpoint_url", "sts_endpoint_url", "request_timeout_ms", "max_retries", "encryption_context",
                              "profile", "use_fips_endpoint", "mfa_serial"]

    public var name: String
    public var provider: Provider
    public var clients: [Principal]
    public var autoCreate: Bool
    public var keySpec: KeySpec
    public var prefetchConcurrency: Int
    /// `rotate_after`: scheduled rotation of every key whose newest version is older (seconds).
    public var rotateAfterSeconds: Int64?
    /// Where the wrapped keys live: `state_dir/<instance>` (the default) or a shared S3 store.
    public var store: StoreSettings = .local

    static func parse(name: String, table: TOMLTable, file: String) throws(ConfigError) -> InstanceConfig {
        var reader = TableReader(table: table, file: file, path: "instances.\(name).")
        guard isValidName(name) else {
            throw ConfigError(file: file, key: "instances.\(name)", "an instance name may use letters, digits, \"_\", \"-\" and \".\" (up to 64, not starting with \".\")")
        }
        let providerName = try reader.string("provider") ?? "local"
        let clients = try reader.principals("clients") ?? []
        let autoCreate = try reader.bool("auto_create") ?? true
        let specText = try reader.string("key_spec") ?? "AES_256"
        guard let keySpec = KeySpec(rawValue: specText) else {
            throw reader.error("key_spec", "must be \"AES_128\" or \"AES_256\", not \"\(specText)\"")
        }
        let prefetch = try reader.integer("prefetch_concurrency", in: 1...256) ?? 32
        var rotateAfter: Int64?
        if let text = try reader.string("rotate_after") {
            guard let seconds = parsePeriod(text) else {
                throw reader.error("rotate_after", "must be a whole number and a unit, d (days), h, m or s, like \"90d\", not \"\(text)\"")
            }
            rotateAfter = seconds
        }
        var store = try parseStore(&reader, table: table, provider: providerName)
        // With a store, `region` is the store's for every provider (parsed above).
        let foreignAWSKeys = store == .local || providerName == "aws" ? awsOnlyKeys : awsOnlyKeys.filter { $0 != "region" }
        let provider: Provider
        switch providerName {
        case "local":
            let file = try reader.string("master_key_file")
            let credential = try reader.string("master_key_credential")
            switch (file, credential) {
            case let (path?, nil):
                guard path.hasPrefix("/") else { throw reader.error("master_key_file", "must be an absolute path") }
                provider = .local(.file(path))
            case let (nil, name?):
                guard !name.isEmpty, !name.contains("/") else { throw reader.error("master_key_credential", "must be a credential name without \"/\"") }
                provider = .local(.credential(name))
            case (nil, nil):
                throw reader.error("master_key_file", "the local provider needs a master key: set master_key_file or master_key_credential (create a key with: keybrokerctl init-local --master-key /etc/keybroker/master.key)")
            case (_?, _?):
                throw reader.error("master_key_credential", "set either master_key_file or master_key_credential, not both")
            }
            if let key = foreignAWSKeys.first(where: { table.contains(key: $0) }) {
                throw reader.error(key, "applies to provider \"aws\" only; this instance uses provider \"local\"")
            }
            try rejectKMIPKeys(table, &reader, provider: "local")
        case "aws":
            if let key = localOnlyKeys.first(where: { table.contains(key: $0) }) {
                throw reader.error(key, "applies to provider \"local\" only; an aws instance's master key is master_key_id")
            }
            try rejectKMIPKeys(table, &reader, provider: "aws")
            let aws = try parseAWS(&reader, instance: name, prefetch: prefetch)
            store = storeWithAWS(store, aws)
            provider = .aws(aws)
        case "kmip":
            provider = .kmip(try parseKMIP(&reader, table: table, prefetch: prefetch, foreignAWSKeys: foreignAWSKeys))
        default:
            throw reader.error("provider", "unknown provider \"\(providerName)\" (expected \"local\", \"aws\" or \"kmip\")")
        }
        try reader.rejectUnknownKeys()
        return InstanceConfig(name: name, provider: provider, clients: clients, autoCreate: autoCreate,
                              keySpec: keySpec, prefetchConcurrency: prefetch, rotateAfterSeconds: rotateAfter, store: store)
    }

    private static func parseAWS(_ reader: inout TableReader, instance: String, prefetch: Int) throws(ConfigError) -> AWSSettings {
        var settings = AWSSettings(concurrency: prefetch)
        if let keyID = try reader.string("master_key_id") {
            guard !keyID.isEmpty, keyID.utf8.count <= 2048, !keyID.contains(where: { $0.isWhitespace || $0.isNewline }) else {
                throw reader.error("master_key_id", "must be a key id, key ARN, \"alias/NAME\" or alias ARN, without spaces")
            }
            settings.masterKeyID = keyID
        }
        if let region = try reader.string("region") {
            guard AWSSettings.isValidRegion(region) else {
                throw reader.error("region", "\"\(region)\" is not a region name (lower-case letters, digits and \"-\", like us-east-1)")
            }
            settings.region = region
        }
        for key in ["endpoint_url", "sts_endpoint_url"] {
            guard let url = try reader.string(key) else { continue }
            guard Endpoint(parsing: url) != nil else {
                throw reader.error(key, "\"\(url)\" is not an http:// or https:// URL")
            }
            if key == "endpoint_url" { settings.endpointURL = url } else { settings.stsEndpointURL = url }
        }
        if let value = try reader.integer("request_timeout_ms", in: 100...600_000) { settings.requestTimeoutMilliseconds = value }
        if let value = try reader.integer("max_retries", in: 0...20) { settings.maxRetries = value }
        if let profile = try reader.string("profile") {
            guard !profile.isEmpty, !profile.contains(where: { $0 == "[" || $0 == "]" || $0.isNewline }) else {
                throw reader.error("profile", "must be an AWS profile name")
            }
            settings.profile = profile
        }
        if let fips = try reader.bool("use_fips_endpoint") { settings.useFIPSEndpoint = fips }
        if let context = try reader.bool("encryption_context") { settings.encryptionContext = context }
        if let serial = try reader.string("mfa_serial") {
            guard !serial.isEmpty, !serial.contains(where: { $0.isWhitespace }) else {
                throw reader.error("mfa_serial", "must be the serial number or ARN of an MFA device")
            }
            settings.mfaSerial = serial
        }
        return settings
    }

    /// "90d", "12h", "30m", "2s": 1 second to 100 years.
    static func parsePeriod(_ text: String) -> Int64? {
        guard let unit = text.last, let count = Int64(text.dropLast()), count > 0, text.first?.isNumber == true else { return nil }
        let size: Int64
        switch unit {
        case "d": size = 86400
        case "h": size = 3600
        case "m": size = 60
        case "s": size = 1
        default: return nil
        }
        guard count <= 36500 * 86400 / size else { return nil }
        return count * size
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.first, first != ".", name.utf8.count <= 64 else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }
    }
}
