import Glibc
import SecureMemory

/// Reads the local provider's master key: 64 hex characters, an optional trailing newline, in a
/// file no one but its owner can read.
public enum MasterKeyFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public static func read(path: String, requirePrivateMode: Bool = true) throws(Failure) -> SecureBytes {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Failure(description: "cannot read master key file \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw Failure(description: "master key file \(path) is not a regular file")
        }
        if requirePrivateMode && info.st_mode & 0o077 != 0 {
            throw Failure(description: "master key file \(path) is readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        guard let file = fopen(path, "re") else {
            throw Failure(description: "cannot read master key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var text = [UInt8](repeating: 0, count: 67)
        let count = fread(&text, 1, text.count, file)
        defer { text.cleanse() }
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
                    guard let high = hexValue(text[2 * index]), let low = hexValue(text[2 * index + 1]) else { throw BadHex() }
                    key[index] = high << 4 | low
                }
            }
        } catch {
            throw Failure(description: "master key file \(path) must hold 64 hex characters; found a character that is not hex")
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
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
        let digits = Array("0123456789abcdef".utf8)
        var text = key.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] } + [UInt8(ascii: "\n")]
        defer { text.cleanse() }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "the file exists; keybrokerctl never replaces a master key" : String(cString: strerror(errno))
            throw Failure(description: "cannot create master key file \(path): \(reason)")
        }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0, write(fd, text, text.count) == text.count, fsync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw Failure(description: "cannot write master key file \(path): \(reason)")
        }
    }
}
