import Glibc

/// Directories only their owner may enter (state, key and export directories).
public enum PrivateDirectory {
    /// Creates `path` with mode 0700 unless it exists, giving a new one to `owner` when given.
    /// Fails when `path` exists and is not a directory. Returns true when it was created.
    /// `what` names it in errors ("key directory").
    @discardableResult
    public static func create(_ path: String, owner: (uid: uid_t, gid: gid_t)? = nil,
                              what: String = "directory") throws(SystemError) -> Bool {
        let created = mkdir(path, 0o700) == 0
        if !created && errno != EEXIST {
            throw SystemError(path: path, operation: "create \(what)", errno: errno)
        }
        // Not fatal (keybrokerctl run as root gives copies the daemon's owner): the first file
        // written into a directory the daemon cannot use reports the problem.
        if created, let owner { _ = chown(path, owner.uid, owner.gid) }
        var info = stat()
        guard stat(path, &info) == 0 else { throw SystemError(path: path, operation: "stat", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw SystemError(path: path, operation: "use as \(what)", errno: ENOTDIR) }
        return created
    }
}
