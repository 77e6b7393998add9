import Glibc

/// Owner, mode and type of a file, in the words a refusal line uses.
struct FileFacts {
    let mode: mode_t
    let uid: uid_t
    let gid: gid_t

    init(_ info: stat) {
        self.mode = info.st_mode
        self.uid = info.st_uid
        self.gid = info.st_gid
    }

    var type: mode_t { mode & S_IFMT }
    var isDirectory: Bool { type == S_IFDIR }
    var isRegularFile: Bool { type == S_IFREG }
    var isSymbolicLink: Bool { type == S_IFLNK }
    var isSticky: Bool { mode & 0o1000 != 0 }
    var writableByGroup: Bool { mode & 0o020 != 0 }
    var writableByOthers: Bool { mode & 0o002 != 0 }

    /// "0750", with the set-id and sticky bits when present.
    var octalMode: String {
        let bits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - bits.count)) + bits
    }

    var kind: String {
        switch type {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        default: "a special file"
        }
    }

    /// "mode 0770, owner alice (uid 1001), group dba".
    var summary: String {
        "mode \(octalMode), owner \(Self.userName(uid)), group \(Self.groupName(gid))"
    }

    static func userName(_ uid: uid_t) -> String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        if getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name {
            return "\(String(cString: name)) (uid \(uid))"
        }
        return "uid \(uid)"
    }

    static func groupName(_ gid: gid_t) -> String {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        if getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.gr_name {
            return String(cString: name)
        }
        return "gid \(gid)"
    }

    /// The user keybrokerd runs as, for the fix in a refusal: "chown keybroker …".
    static var daemonUser: String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        if getpwuid_r(geteuid(), &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name {
            return String(cString: name)
        }
        return String(geteuid())
    }
}
