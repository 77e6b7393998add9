import ProviderSettings
import TOMLKit

/// The kmip provider's part of an instance table. Building the provider from it is
/// keybrokerd's ProviderFactory's job.
extension InstanceConfig {
    static let kmipOnlyKeys = ["kmip_server", "kmip_ca_file", "kmip_client_cert_file", "kmip_client_key_file",
                               "kmip_client_key_credential", "kmip_batch_size", "kmip_protocol_version"]
    /// aws settings that mean the same for kmip.
    static let sharedWithKMIP: Set<String> = ["master_key_id", "request_timeout_ms", "max_retries"]

    static func rejectKMIPKeys(_ table: TOMLTable, _ reader: inout TableReader, provider: String) throws(ConfigError) {
        if let key = kmipOnlyKeys.first(where: { table.contains(key: $0) }) {
            throw reader.error(key, "applies to provider \"kmip\" only; this instance uses provider \"\(provider)\"")
        }
    }

    static func parseKMIP(_ reader: inout TableReader, table: TOMLTable, prefetch: Int, foreignAWSKeys: [String]) throws(ConfigError) -> KMIPSettings {
        if let key = localOnlyKeys.first(where: { table.contains(key: $0) }) {
            throw reader.error(key, "applies to provider \"local\" only; a kmip instance's master key is master_key_id")
        }
        if let key = foreignAWSKeys.first(where: { table.contains(key: $0) && !sharedWithKMIP.contains($0) }) {
            throw reader.error(key, "applies to provider \"aws\" only; this instance uses provider \"kmip\"")
        }
        guard let serverText = try reader.string("kmip_server") else {
            throw reader.error("kmip_server", "a kmip instance needs its key manager: kmip_server = \"kmip.example.com:5696\"")
        }
        guard let servers = KMIPSettings.parseServers(serverText) else {
            throw reader.error("kmip_server", "\"\(serverText)\" is not host:port[, host:port…] (an IPv6 address in brackets: [::1]:5696)")
        }
        func path(_ key: String) throws(ConfigError) -> String? {
            guard let value = try reader.string(key) else { return nil }
            guard value.hasPrefix("/") else { throw reader.error(key, "must be an absolute path") }
            return value
        }
        guard let caFile = try path("kmip_ca_file") else {
            throw reader.error("kmip_ca_file", "a kmip instance needs the CA that signed the key manager's certificate (PEM)")
        }
        guard let certificate = try path("kmip_client_cert_file") else {
            throw reader.error("kmip_client_cert_file", "a kmip instance needs its client certificate (PEM)")
        }
        let keyFile = try path("kmip_client_key_file")
        let keyCredential = try reader.string("kmip_client_key_credential")
        let clientKey: KMIPSettings.ClientKeySource
        switch (keyFile, keyCredential) {
        case let (file?, nil): clientKey = .file(file)
        case let (nil, name?):
            guard !name.isEmpty, !name.contains("/") else { throw reader.error("kmip_client_key_credential", "must be a credential name without \"/\"") }
            clientKey = .credential(name)
        case (nil, nil):
            throw reader.error("kmip_client_key_file", "a kmip instance needs the client certificate's private key: set kmip_client_key_file or kmip_client_key_credential")
        case (_?, _?):
            throw reader.error("kmip_client_key_credential", "set either kmip_client_key_file or kmip_client_key_credential, not both")
        }
        var settings = KMIPSettings(servers: servers, caFile: caFile, clientCertificateFile: certificate, clientKey: clientKey,
                                    concurrency: prefetch)
        if let keyID = try reader.string("master_key_id") {
            guard MasterKeyReference(parsing: keyID) != nil else {
                throw reader.error("master_key_id", "must be a KMIP Unique Identifier (no spaces) or name:NAME")
            }
            settings.masterKeyID = keyID
        }
        if let value = try reader.integer("request_timeout_ms", in: 100...600_000) { settings.requestTimeoutMilliseconds = value }
        if let value = try reader.integer("max_retries", in: 0...20) { settings.maxRetries = value }
        if let value = try reader.integer("kmip_batch_size", in: 1...256) { settings.batchSize = value }
        if let version = try reader.string("kmip_protocol_version") {
            guard ["1.2", "1.3", "1.4"].contains(version) else {
                throw reader.error("kmip_protocol_version", "must be \"1.4\", \"1.3\" or \"1.2\" (the highest version keybroker offers), not \"\(version)\"")
            }
            settings.maximumVersion = version
        }
        return settings
    }
}
