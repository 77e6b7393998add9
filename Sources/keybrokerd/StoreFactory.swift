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
            // A directory that cannot be examined or created may be on a file system not mounted
            // yet: systemd tries again. One that is there but not owned is a configuration error.
            if error.errno != nil { throw StartupError("\(configFile): state_dir: cannot create \(stateDirectory): \(error)") }
            throw .configuration("\(configFile): state_dir: \(error)")
        }
    }

    func makeStore(for instance: InstanceConfig, provider: any KeyProvider) -> any KeyFileStore {
        KeyFileDirectory(path: "\(stateDirectory)/\(instance.name)", prefix: provider.fileNamePrefix)
    }
}
