import BrokerConfiguration
import Glibc
import KeyStore
import SystemSupport

/// Where each instance keeps its wrapped keys: today `state_dir/<instance>`, the embedded
/// default. A new store is a new module and one more case here.
struct StoreFactory {
    let configFile: String
    let stateDirectory: String

    /// The state directory exists (created with mode 0700), only its owner may enter it, and it
    /// and every directory above belong to root or this daemon's user, are writable by no one
    /// else and are reached through no symbolic link (PathTrust).
    func prepare() throws(StartupError) {
        do {
            try PathTrust.checkDirectory(stateDirectory, create: true, privateMode: true)
        } catch {
            throw .configuration("\(configFile): state_dir: \(error)")
        }
    }

    func makeStore(for instance: InstanceConfig, provider: any KeyProvider) -> any KeyFileStore {
        KeyFileDirectory(path: "\(stateDirectory)/\(instance.name)", prefix: provider.fileNamePrefix)
    }
}
