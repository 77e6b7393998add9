import Glibc

/// A file open for reading, closed when the value goes away. Small files (configurations, key
/// files, credentials, master keys) are read through it, so each check happens in one place.
public final class OpenedFile {
    public let path: String
    private let fd: Int32

    /// Opens `path` read-only; with `followSymlinks: false` a symbolic link is refused (ELOOP).
    /// Always O_NONBLOCK, so a FIFO or device in a file's place cannot block the caller in open()
    /// (callers check `status()` for a regular file); reads of regular files are unaffected.
    public init(path: String, followSymlinks: Bool = true) throws(SystemError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (followSymlinks ? 0 : O_NOFOLLOW))
        guard fd >= 0 else { throw SystemError(path: path, operation: "open", errno: errno) }
        self.path = path
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    public func status() throws(SystemError) -> stat {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemError(path: path, operation: "stat", errno: errno) }
        return info
    }

    /// Fills `buffer` from the current position until it is full or the file ends; returns the
    /// number of bytes read.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var count = 0
        while count < buffer.count {
            let n = Glibc.read(fd, base + count, buffer.count - count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            count += n
        }
        return count
    }

    /// Fills `bytes` from the current position; returns the number of bytes read.
    public func read(into bytes: inout [UInt8]) throws(SystemError) -> Int {
        try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemError) in try read(into: buffer) }
        }.get()
    }

    /// The rest of the file; fails with EFBIG when it holds more than `limit` bytes.
    public func readAll(limit: Int) throws(SystemError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = try read(into: &chunk)
            bytes += chunk[0..<count]
            if bytes.count > limit { throw SystemError(path: path, operation: "read", errno: EFBIG) }
            if count < chunk.count { return bytes }
        }
    }
}

public enum SmallFile {
    /// The whole file; fails with EFBIG when it holds more than `limit` bytes.
    public static func read(path: String, limit: Int, followSymlinks: Bool = true) throws(SystemError) -> [UInt8] {
        let file = try OpenedFile(path: path, followSymlinks: followSymlinks)
        return try file.readAll(limit: limit)
    }
}
