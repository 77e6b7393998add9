import BrokerConfiguration
import Glibc
import KeyStore
import SystemSupport

/// Where each instance keeps its wrapped keys: today `state_dir/<instance>`, the embedded
/// default. A new store is a new module and one more case here.
struct StoreFactory {
    let configFile: String
    let stateDirectory: String

    /// The state directory exists, is a directory, and only its owner may enter it.
    func prepare() throws(StartupError) {
        do {
            try PrivateDirectory.create(stateDirectory)
        } catch {
            let message = "\(configFile): state_dir: " + (error.errno == ENOTDIR ? "\(stateDirectory) is not a directory" : "cannot create \(stateDirectory): \(error.reason)")
            throw error.errno == ENOTDIR ? .configuration(message) : StartupError(message)
        }
        var info = stat()
        guard stat(stateDirectory, &info) == 0 else {
            throw StartupError("\(configFile): state_dir: cannot use \(stateDirectory): \(errnoText(errno))")
        }
        if info.st_mode & 0o077 != 0 {
            throw .configuration("\(configFile): state_dir: \(stateDirectory) is open to group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run: chmod 700 \(stateDirectory)")
        }
    }

    func makeStore(for instance: InstanceConfig, provider: any KeyProvider) -> any KeyFileStore {
        KeyFileDirectory(path: "\(stateDirectory)/\(instance.name)", prefix: provider.fileNamePrefix)
    }
}
