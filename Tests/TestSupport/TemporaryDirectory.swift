import Glibc

/// A fresh directory under /tmp for one test case, removed with everything in it when the test
/// case goes away. XCTest makes one test case object per test method, so a stored property
/// `let temporary = TemporaryDirectory("name")` gives every test its own directory.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(_ prefix: String) {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    deinit {
        _ = system("rm -rf '\(path)'")
    }

    /// Writes `bytes` to `name` in the directory with `mode`; returns the path.
    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o600) -> String {
        let file = "\(path)/\(name)"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        precondition(fd >= 0, "cannot create \(file)")
        precondition(Glibc.write(fd, bytes, bytes.count) == bytes.count, "cannot write \(file)")
        close(fd)
        chmod(file, mode)
        return file
    }

    @discardableResult
    public func write(_ name: String, _ text: String, mode: mode_t = 0o600) -> String {
        write(name, Array(text.utf8), mode: mode)
    }
}
