import AWSCore
import BrokerConfiguration
import Glibc
import KeyStore
import Logging
import ProviderSettings
import S3Store
import SystemSupport

/// Where each instance keeps its wrapped keys: `state_dir/<instance>`, the embedded default, or a
/// shared S3 store with that directory as its write-through cache. A new store is a new module
/// and one more case here.
struct StoreFactory {
    let configFile: String
    let stateDirectory: String
    /// The AWS_* variables and CREDENTIALS_DIRECTORY, for the S3 store's credential chain.
    var environment: [String: String] = [:]
    var logger = Logger(label: "keybrokerd")

    /// The state directory exists (created with mode 0700), only its owner may enter it, and it
    /// and every directory above belong to root or this daemon's user, are writable by no one
    /// else and are reached through no symbolic link (PathTrust).
    func prepare() throws(StartupError) {
        do {
            try PathTrust.checkDirectory(stateDirectory, create: true, privateMode: true)
        } catch {
            // A directory that cannot be examined or created may be on a file system not mounted
            // yet: systemd tries again. One that is there but not owned is a configuration error.
            if error.errno != nil { throw StartupError("\(configFile): state_dir: cannot create \(stateDirectory): \(error)") }
            throw .configuration("\(configFile): state_dir: \(error)")
        }
    }

    func makeStore(for instance: InstanceConfig, provider: any KeyProvider) async throws(StartupError) -> any KeyFileStore {
        let directory = KeyFileDirectory(path: "\(stateDirectory)/\(instance.name)", prefix: provider.fileNamePrefix)
        switch instance.store {
        case .local:
            return directory
        case let .s3(settings):
            return try await makeS3(instance, settings, cache: directory)
        }
    }

    private func makeS3(_ instance: InstanceConfig, _ settings: S3StoreSettings, cache: KeyFileDirectory) async throws(StartupError) -> any KeyFileStore {
        var logger = logger
        logger[metadataKey: "instance"] = "\(instance.name)"
        let aws = AWSSettings(region: settings.region, requestTimeoutMilliseconds: settings.requestTimeoutMilliseconds,
                              maxRetries: settings.maxRetries, profile: settings.profile, concurrency: 16)
        do {
            let session = try await AWSSession.make(instance: instance.name, settings: aws, environment: environment, logger: logger)
            let client = try S3Client(bucket: settings.bucket, endpointURL: settings.endpointURL, session: session)
            return S3KeyStore(client: client, prefix: settings.prefix, instance: instance.name, cache: cache,
                              refreshMilliseconds: settings.refreshMilliseconds, logger: logger)
        } catch {
            // As for the aws provider: the region may come from the environment or a metadata
            // service, which can change without the unit (exit status 1).
            throw StartupError(ConfigError(file: configFile, key: "instances.\(instance.name).\(error.setting)", error.message).description)
        }
    }
}
