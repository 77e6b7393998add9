import AWSKMS
import BrokerConfiguration
import KeyStore
import KMIPKMS
import KMS
import Logging
import ProviderSettings
import SecureMemory

/// Builds each instance's provider from its settings: the one place that knows every provider
/// module. Reading master keys and asking the EC2 metadata service for a region happen here, not
/// in the configuration. A new provider is a new module and one more case below.
struct ProviderFactory {
    let configFile: String
    /// CREDENTIALS_DIRECTORY and the AWS_* variables.
    let environment: [String: String]
    let logger: Logger

    func makeProvider(for instance: InstanceConfig) async throws(StartupError) -> any KeyProvider {
        switch instance.provider {
        case let .local(source): try makeLocal(instance.name, source)
        case let .aws(settings): try await makeAWS(instance.name, settings)
        case let .kmip(settings): try makeKMIP(instance.name, settings)
        }
    }

    /// Reads the TLS client key (mode-checked like a master key file, unless it is a systemd
    /// credential) and loads the CA, certificate and key; connects to nothing yet.
    private func makeKMIP(_ name: String, _ settings: KMIPSettings) throws(StartupError) -> any KeyProvider {
        let setting: String
        let path: String
        switch settings.clientKey {
        case let .file(file):
            setting = "instances.\(name).kmip_client_key_file"
            path = file
        case let .credential(credential):
            setting = "instances.\(name).kmip_client_key_credential"
            guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw StartupError(ConfigError(file: configFile, key: setting, "CREDENTIALS_DIRECTORY is not set; run keybrokerd from keybroker.service (LoadCredential=\(credential):keybroker.\(credential)), or use kmip_client_key_file"))
            }
            path = "\(directory)/\(credential)"
        }
        let key: SecureBytes
        do {
            let fromCredentials = if case .credential = settings.clientKey { true } else { false }
            key = try TLSFiles.readClientKey(path: path, requirePrivateMode: !fromCredentials)
        } catch {
            throw StartupError(ConfigError(file: configFile, key: setting, error.description))
        }
        for (certificateSetting, file) in [("kmip_ca_file", settings.caFile), ("kmip_client_cert_file", settings.clientCertificateFile)] {
            do {
                try TLSFiles.checkCertificate(path: file)
            } catch {
                throw StartupError(ConfigError(file: configFile, key: "instances.\(name).\(certificateSetting)", error.description))
            }
        }
        do {
            return try KMIPProvider(instance: name, settings: settings, clientKey: key, logger: logger)
        } catch {
            // The TLS layer names the setting its message is about.
            let named = ["kmip_ca_file", "kmip_client_cert_file"].first { error.message.hasPrefix($0) }.map { "instances.\(name).\($0)" } ?? setting
            throw StartupError(ConfigError(file: configFile, key: named, error.message))
        }
    }

    private func makeAWS(_ name: String, _ settings: AWSSettings) async throws(StartupError) -> any KeyProvider {
        do {
            return try await AWSKMSProvider.make(instance: name, settings: settings, environment: environment, logger: logger)
        } catch {
            // Exit status 1, not 78: the region and endpoints come from the environment, the AWS
            // profile files and the metadata service too, which can change without the unit.
            throw StartupError(ConfigError(file: configFile, key: "instances.\(name).\(error.setting)", error.message).description)
        }
    }

    private func makeLocal(_ name: String, _ source: InstanceConfig.MasterKeySource) throws(StartupError) -> any KeyProvider {
        let path: String
        let key: String
        switch source {
        case let .file(file):
            path = file
            key = "instances.\(name).master_key_file"
        case let .credential(credential):
            key = "instances.\(name).master_key_credential"
            guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw StartupError(ConfigError(file: configFile, key: key, "CREDENTIALS_DIRECTORY is not set; run keybrokerd from keybroker.service (LoadCredential=\(credential):keybroker.\(credential), the key in /etc/credstore/keybroker.\(credential)), or use master_key_file"))
            }
            path = "\(directory)/\(credential)"
        }
        do {
            // systemd hands credentials over in a directory only this service can read, and may
            // grant access through ACLs that show up as group bits: the mode check is for files
            // an admin manages.
            let fromCredentials = if case .credential = source { true } else { false }
            let shownName = if case let .credential(credential) = source { "systemd credential \(credential)" } else { path }
            return LocalProvider(masterKey: try MasterKeyFile.read(path: path, requirePrivateMode: !fromCredentials), instance: name,
                                 masterKeyName: shownName)
        } catch {
            throw StartupError(ConfigError(file: configFile, key: key, error.description))
        }
    }
}
