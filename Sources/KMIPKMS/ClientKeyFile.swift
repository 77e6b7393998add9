import Glibc
import SecureMemory
import SystemSupport

/// Reads the TLS client's private key (PEM) into locked memory, with the master key's rules: a
/// regular file no one but its owner can read (skipped for systemd credentials, whose directory
/// is private to the service and may carry ACLs that look like group bits).
public enum ClientKeyFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    static let maximumLength = 64 * 1024

    public static func read(path: String, requirePrivateMode: Bool) throws(Failure) -> SecureBytes {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Failure(description: "cannot read the KMIP client key \(path): \(errnoText(errno))")
        }
        if requirePrivateMode && info.st_mode & 0o077 != 0 && (info.st_mode & S_IFMT) == S_IFREG {
            throw Failure(description: "the KMIP client key \(path) is readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        let key: SecureBytes?
        do {
            key = try SecretFile.read(path: path, limit: maximumLength)
        } catch {
            throw Failure(description: "the KMIP client key: \(error.description)")
        }
        guard let key, key.count > 0 else {
            throw Failure(description: "the KMIP client key \(path) is empty or missing")
        }
        return key
    }
}
