import Glibc

/// What keybrokerd trusts must be owned: its configuration, master keys, state and socket
/// directories, and every directory above them, belong to root or to the user keybrokerd runs as,
/// are writable by no one else (a sticky directory such as /tmp excepted above), and are reached
/// through no symbolic link. Whoever can write a directory can replace what is in it, so one
/// foreign directory anywhere on the way would hand the path to another user.
///
/// Each check is made on the path the daemon then uses; since every directory on it is owned,
/// nobody else can change it between the check and the use.
public enum PathTrust {
    /// Root and the user keybrokerd runs as.
    public static func isTrustedOwner(_ uid: uid_t) -> Bool {
        uid == 0 || uid == geteuid()
    }

    /// `path` made absolute (against the working directory) with "." and ".." resolved by name;
    /// the checks below then walk exactly the directories this string names.
    public static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if getcwd(&buffer, buffer.count) != nil {
                parts = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: "/")
            }
        }
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Checks every directory that leads to `path`, from "/" down to its parent.
    public static func checkParents(of path: String) throws(PathRefusal) {
        let target = normalized(path)
        let components = target.split(separator: "/")
        var prefix = ""
        for component in components.dropLast() {
            let directory = prefix.isEmpty ? "/" : prefix
            try checkParent(directory, target: target)
            prefix += "/" + component
        }
        if !components.isEmpty {
            try checkParent(prefix.isEmpty ? "/" : prefix, target: target)
        }
    }

    private static func checkParent(_ directory: String, target: String) throws(PathRefusal) {
        let above = "(above \(target))"
        var info = stat()
        guard lstat(directory, &info) == 0 else {
            let code = errno
            throw PathRefusal(path: directory, found: "\(above) cannot be examined: \(errnoText(code))",
                              fix: "create it, owned by root with mode 0755", errno: code)
        }
        let facts = FileFacts(info)
        if facts.isSymbolicLink {
            throw PathRefusal(path: directory, found: "\(above) is a symbolic link to \(linkTarget(directory))",
                              fix: "keybrokerd follows no symbolic link to what it trusts; name the real path\(realPath(directory).map { " instead: \($0)\(target.dropFirst(directory.count))" } ?? "")")
        }
        guard facts.isDirectory else {
            throw PathRefusal(path: directory, found: "\(above) is \(facts.kind), not a directory", fix: "name a path made of directories")
        }
        guard isTrustedOwner(facts.uid) else {
            throw PathRefusal(path: directory, found: "\(above) belongs to \(FileFacts.userName(facts.uid)) (\(facts.summary))",
                              fix: "only root or keybrokerd's user (\(FileFacts.daemonUser)) may own a directory above what keybrokerd trusts; run: chown root \(directory)")
        }
        if (facts.writableByOthers || facts.writableByGroup) && !facts.isSticky {
            throw PathRefusal(path: directory, found: "\(above) is writable by \(writers(facts)) (\(facts.summary))",
                              fix: "that user could replace what is inside; run: chmod go-w \(directory)")
        }
    }

    /// Checks a directory keybrokerd keeps files in (the state, instance and socket directories),
    /// creating it with mode 0700 first when `create` is set. `privateMode` also refuses read and
    /// search access for group and others. Returns the normalized path.
    @discardableResult
    public static func checkDirectory(_ path: String, create: Bool, privateMode: Bool) throws(PathRefusal) -> String {
        let directory = normalized(path)
        try checkParents(of: directory)
        if create && mkdir(directory, 0o700) != 0 && errno != EEXIST {
            let code = errno
            throw PathRefusal(path: directory, found: "cannot be created: \(errnoText(code))", fix: "create it, owned by \(FileFacts.daemonUser) with mode 0700", errno: code)
        }
        var info = stat()
        guard lstat(directory, &info) == 0 else {
            let code = errno
            throw PathRefusal(path: directory, found: "cannot be examined: \(errnoText(code))", fix: "create it, owned by \(FileFacts.daemonUser) with mode 0700", errno: code)
        }
        let facts = FileFacts(info)
        if facts.isSymbolicLink {
            throw PathRefusal(path: directory, found: "is a symbolic link to \(linkTarget(directory))",
                              fix: "keybrokerd follows no symbolic link to what it trusts; name the real directory\(realPath(directory).map { " instead: \($0)" } ?? "")")
        }
        guard facts.isDirectory else {
            throw PathRefusal(path: directory, found: "is \(facts.kind), not a directory", fix: "remove it or name another path")
        }
        guard isTrustedOwner(facts.uid) else {
            throw PathRefusal(path: directory, found: "belongs to \(FileFacts.userName(facts.uid)) (\(facts.summary))",
                              fix: "only root or keybrokerd's user may own it; run: chown \(FileFacts.daemonUser) \(directory)")
        }
        if privateMode && facts.mode & 0o077 != 0 {
            throw PathRefusal(path: directory, found: "is open to group or others (\(facts.summary))", fix: "run: chmod 700 \(directory)")
        }
        if facts.writableByOthers || facts.writableByGroup {
            throw PathRefusal(path: directory, found: "is writable by \(writers(facts)) (\(facts.summary))",
                              fix: "that user could replace the files in it; run: chmod go-w \(directory)")
        }
        return directory
    }

    /// Opens a file keybrokerd trusts (configuration, master key) for reading: every directory
    /// above it checked, opened without following a symbolic link and without blocking on a FIFO,
    /// then checked on the descriptor: a regular file, owned by root or keybrokerd's user, writable
    /// by no one else, and with `privateMode` readable by no one else.
    public static func openFile(_ path: String, privateMode: Bool) throws(PathRefusal) -> OpenedFile {
        let path = normalized(path)
        try checkParents(of: path)
        let file: OpenedFile
        do {
            file = try OpenedFile(path: path, followSymlinks: false)
        } catch {
            if error.errno == ELOOP {
                throw PathRefusal(path: path, found: "is a symbolic link to \(linkTarget(path))",
                                  fix: "keybrokerd follows no symbolic link to what it trusts; name the real file\(realPath(path).map { " instead: \($0)" } ?? "")")
            }
            throw PathRefusal(path: path, found: "cannot be opened: \(error.reason)", fix: "check the path", errno: error.errno)
        }
        let facts: FileFacts
        do {
            facts = FileFacts(try file.status())
        } catch {
            throw PathRefusal(path: path, found: "cannot be examined: \(error.reason)", fix: "check the path")
        }
        if !facts.isRegularFile {
            throw PathRefusal(path: path, found: "is \(facts.kind), not a regular file (\(facts.summary))", fix: "replace it with a regular file")
        }
        if !isTrustedOwner(facts.uid) {
            throw PathRefusal(path: path, found: "belongs to \(FileFacts.userName(facts.uid)) (\(facts.summary))",
                              fix: "only root or keybrokerd's user may own it; run: chown root \(path)")
        }
        if facts.writableByOthers || facts.writableByGroup {
            throw PathRefusal(path: path, found: "is writable by \(writers(facts)) (\(facts.summary))", fix: "run: chmod go-w \(path)")
        }
        if privateMode && facts.mode & 0o077 != 0 {
            throw PathRefusal(path: path, found: "is readable by group or others (\(facts.summary))", fix: "run: chmod 600 \(path)")
        }
        return file
    }

    /// The whole of a small trusted file that holds no secret (see `openFile`), at most `limit` bytes.
    public static func readFile(_ path: String, privateMode: Bool, limit: Int) throws(PathRefusal) -> [UInt8] {
        let file = try openFile(path, privateMode: privateMode)
        do {
            return try file.readAll(limit: limit)
        } catch {
            if error.errno == EFBIG {
                throw PathRefusal(path: normalized(path), found: "is larger than \(limit) bytes", fix: "name the right file", errno: EFBIG)
            }
            throw PathRefusal(path: normalized(path), found: "cannot be read: \(error.reason)", fix: "check the file", errno: error.errno)
        }
    }

    private static func writers(_ facts: FileFacts) -> String {
        facts.writableByOthers ? "every user" : "group \(FileFacts.groupName(facts.gid))"
    }

    private static func linkTarget(_ path: String) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { return "?" }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
