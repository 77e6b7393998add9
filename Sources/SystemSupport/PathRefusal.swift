/// Why keybrokerd will not trust a path, as one line: the path, what was found there, and the fix.
public struct PathRefusal: Error, Sendable, CustomStringConvertible {
    public var path: String
    /// What was found, e.g. "is writable by every user (mode 0777, owner root)".
    public var found: String
    /// What to do, e.g. "run: chmod go-w /run/keybroker".
    public var fix: String
    /// Set when the file could not be opened or read at all (ENOENT, EACCES; EFBIG: too large),
    /// rather than refused for what it is.
    public var errno: Int32?

    public init(path: String, found: String, fix: String, errno: Int32? = nil) {
        self.path = path
        self.found = found
        self.fix = fix
        self.errno = errno
    }

    public var description: String { "\(path) \(found); \(fix)" }
}
