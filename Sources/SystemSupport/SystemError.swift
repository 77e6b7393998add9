import Glibc

/// The text of an errno value ("No such file or directory"), thread-safe (strerror_r).
public func errnoText(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard strerror_r(code, &buffer, buffer.count) == 0 else { return "errno \(code)" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A failed system call on a path: what was tried, on what, and errno.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    /// What failed, as a verb phrase: "open", "read", "create directory".
    public var operation: String
    public var errno: Int32

    public init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    /// "No such file or directory".
    public var reason: String { errnoText(errno) }

    public var description: String {
        "cannot \(operation) \(path): \(reason) (errno \(errno))"
    }
}
