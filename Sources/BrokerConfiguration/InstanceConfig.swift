import KMS
import SecureMemory
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
    }

    public var name: String
    public var provider: Provider
    public var clients: [Principal]
    public var autoCreate: Bool
    public var keySpec: KeySpec
    public var prefetchConcurrency: Int

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
        let prefetch = try reader.integer("prefetch_concurrency", in: 1...256) ?? 16
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
        case "aws":
            throw reader.error("provider", "provider \"aws\" is not available in this build of keybrokerd")
        default:
            throw reader.error("provider", "unknown provider \"\(providerName)\" (expected \"local\")")
        }
        try reader.rejectUnknownKeys()
        return InstanceConfig(name: name, provider: provider, clients: clients, autoCreate: autoCreate,
                              keySpec: keySpec, prefetchConcurrency: prefetch)
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.first, first != ".", name.utf8.count <= 64 else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }
    }

    /// Builds the provider, reading the master key. `environment` supplies CREDENTIALS_DIRECTORY.
    public func makeProvider(configFile: String, environment: [String: String]) throws(ConfigError) -> any KeyProvider {
        switch provider {
        case let .local(source):
            let path: String
            let key: String
            switch source {
            case let .file(file):
                path = file
                key = "instances.\(name).master_key_file"
            case let .credential(credential):
                key = "instances.\(name).master_key_credential"
                guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                    throw ConfigError(file: configFile, key: key, "CREDENTIALS_DIRECTORY is not set; run keybrokerd from systemd with LoadCredential=\(credential):/etc/keybroker/master.key, or use master_key_file")
                }
                path = "\(directory)/\(credential)"
            }
            do {
                return LocalProvider(masterKey: try MasterKeyFile.read(path: path), instance: name)
            } catch {
                throw ConfigError(file: configFile, key: key, error.description)
            }
        }
    }
}
