import Glibc
import SecureMemory
import SystemSupport

/// The TLS files of a kmip instance. All three are trusted like the master key (PathTrust: owned
/// by root or keybrokerd's user, writable by no one else, no symbolic link on the way): whoever
/// could replace the CA file could point keybrokerd at a key manager of their own.
public enum TLSFiles {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    static let maximumLength = 64 * 1024

    /// Reads the client key into locked memory. `requirePrivateMode` is off for systemd
    /// credentials, whose ACLs show up as group bits.
    public static func readClientKey(path: String, requirePrivateMode: Bool) throws(Failure) -> SecureBytes {
        let file: OpenedFile
        let size: Int
        do {
            file = try PathTrust.openFile(path, privateMode: requirePrivateMode)
            do { size = Int(try file.status().st_size) } catch { throw PathRefusal(path: path, found: "cannot be examined: \(error.reason)", fix: "check the file") }
        } catch {
            throw Failure(description: "the KMIP client key \(error)")
        }
        guard size > 0 else { throw Failure(description: "the KMIP client key \(path) is empty") }
        guard size <= maximumLength else { throw Failure(description: "the KMIP client key \(path) is larger than \(maximumLength) bytes") }
        let (key, got): (SecureBytes, Int)
        do {
            (key, got) = try SecretFile.contents(of: file, size: size)
        } catch {
            throw Failure(description: "cannot read the KMIP client key \(path): \(error.reason)")
        }
        guard got == size else { throw Failure(description: "the KMIP client key \(path) changed while it was read") }
        return key
    }

    /// Checks a CA or client certificate file before OpenSSL reads it by path.
    public static func checkCertificate(path: String) throws(Failure) {
        do {
            _ = try PathTrust.openFile(path, privateMode: false)
        } catch {
            throw Failure(description: error.description)
        }
    }
}
