import Glibc
import SecureMemory
import SystemSupport

/// Reads the local provider's master key: 64 hex characters, an optional trailing newline, in a
/// file no one but its owner can read.
public enum MasterKeyFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The file, and every directory above it, must belong to root or keybrokerd's user and be
    /// writable by no one else (PathTrust). `requirePrivateMode` is off for systemd credentials:
    /// systemd may grant access to them through ACLs that show up as group bits.
    public static func read(path: String, requirePrivateMode: Bool = true) throws(Failure) -> SecureBytes {
        var text = [UInt8](repeating: 0, count: 67)
        defer { text.cleanse() }
        let count: Int
        do {
            let file = try PathTrust.openFile(path, privateMode: requirePrivateMode)
            do {
                count = try file.read(into: &text)
            } catch {
                throw PathRefusal(path: path, found: "cannot be read: \(error.reason)", fix: "check the file")
            }
        } catch {
            throw Failure(description: "master key file \(error)")
        }
        var length = count
        if length > 0 && text[length - 1] == UInt8(ascii: "\n") { length -= 1 }
        if length > 0 && text[length - 1] == UInt8(ascii: "\r") { length -= 1 }
        guard length == 2 * LocalProvider.masterKeyLength else {
            throw Failure(description: "master key file \(path) must hold 64 hex characters (a 256-bit key); create one with: keybrokerctl init-local --master-key \(path)")
        }
        struct BadHex: Error {}
        do {
            return try SecureBytes(count: LocalProvider.masterKeyLength) { (key: UnsafeMutableRawBufferPointer) throws(BadHex) in
                for index in 0..<LocalProvider.masterKeyLength {
                    guard let high = Hex.value(of: text[2 * index]), let low = Hex.value(of: text[2 * index + 1]) else { throw BadHex() }
                    key[index] = high << 4 | low
                }
            }
        } catch {
            throw Failure(description: "master key file \(path) must hold 64 hex characters; found a character that is not hex")
        }
    }

    /// Writes a new random master key to `path` with mode 0600; refuses to replace an existing file.
    public static func create(path: String) throws(Failure) {
        var key: [UInt8]
        do {
            key = try Randomness.bytes(LocalProvider.masterKeyLength)
        } catch {
            throw Failure(description: error.description)
        }
        defer { key.cleanse() }
        var text = Hex.encodedBytes(key) + [UInt8(ascii: "\n")]
        defer { text.cleanse() }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "the file exists; keybrokerctl never replaces a master key" : errnoText(errno)
            throw Failure(description: "cannot create master key file \(path): \(reason)")
        }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0, write(fd, text, text.count) == text.count, fsync(fd) == 0 else {
            let reason = errnoText(errno)
            unlink(path)
            throw Failure(description: "cannot write master key file \(path): \(reason)")
        }
    }
}
