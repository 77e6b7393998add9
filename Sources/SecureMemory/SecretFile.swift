import Glibc
import SystemSupport

/// Small private files (credentials, tokens, profile files) read straight into locked memory.
public enum SecretFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// nil when the file does not exist.
    public static func read(path: String, limit: Int = 1 << 20) throws(Failure) -> SecureBytes? {
        let file: OpenedFile
        do {
            file = try OpenedFile(path: path)
        } catch {
            if error.errno == ENOENT || error.errno == ENOTDIR { return nil }
            throw Failure(description: "cannot read \(path): \(error.reason)")
        }
        let info: stat
        do { info = try file.status() } catch { throw Failure(description: "cannot stat \(path): \(error.reason)") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw Failure(description: "\(path) is not a regular file") }
        let size = Int(info.st_size)
        guard size <= limit else { throw Failure(description: "\(path) is larger than \(limit) bytes") }
        let (bytes, got): (SecureBytes, Int)
        do {
            (bytes, got) = try contents(of: file, size: size)
        } catch {
            throw Failure(description: "cannot read \(path): \(error.reason)")
        }
        guard got == size else {
            // The file shrank while we read it: keep what is there.
            return bytes.withUnsafeBytes { raw in SecureBytes(count: got) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<got])) } }
        }
        return bytes
    }

    /// Reads up to `size` bytes of an open file straight into locked memory; also returns how
    /// many there were (fewer when the file shrank since it was examined).
    public static func contents(of file: OpenedFile, size: Int) throws(SystemError) -> (bytes: SecureBytes, count: Int) {
        var got = 0
        let bytes = try SecureBytes(count: size) { (buffer: UnsafeMutableRawBufferPointer) throws(SystemError) in
            got = try file.read(into: buffer)
        }
        return (bytes, got)
    }
}
