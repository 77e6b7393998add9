import CKeybrokerSystem
import CKeybrokerSystemd
import Glibc
import SystemSupport

/// Where the server listens: a socket inherited from systemd, or a path it binds itself.
public enum ListenTarget: Sendable, Equatable {
    case inheritedDescriptor(CInt)
    case path(String)

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        /// The socket setting or the socket unit is wrong as it stands (starting again cannot
        /// help), as opposed to a state that may pass, such as another server still running.
        public var isMisconfiguration = false
    }

    /// The socket systemd passed (LISTEN_FDS), if any, else `path`.
    static func directory(of path: String) -> String {
        path.lastIndex(of: "/").map { index in index == path.startIndex ? "/" : String(path[..<index]) } ?? "."
    }

    public static func fromEnvironment(fallbackPath path: String) throws(Failure) -> ListenTarget {
        let count = CKB_listen_fds()
        if count < 0 {
            throw Failure(description: "Failed to read the sockets passed by systemd: \(errnoText(-count))")
        }
        if count == 0 { return .path(path) }
        if count > 1 {
            throw Failure(description: "systemd passed \(count) sockets; keybroker.socket must have exactly one ListenStream=", isMisconfiguration: true)
        }
        let fd = CKB_listen_fds_start()
        let check = CKB_is_unix_stream_listener(fd)
        if check < 0 {
            throw Failure(description: "Failed to check the socket passed by systemd (fd \(fd)): \(errnoText(-check))")
        }
        if check == 0 {
            throw Failure(description: "the socket passed by systemd (fd \(fd)) is not a listening Unix stream socket; use ListenStream=/run/keybroker/keybroker.sock", isMisconfiguration: true)
        }
        var name = [CChar](repeating: 0, count: 128)
        if CKB_socket_path(fd, &name, name.count) == 0 {
            let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var info = stat()
            if stat(path, &info) == 0 && info.st_mode & 0o007 != 0 {
                throw Failure(description: "the socket passed by systemd, \(path), is open to every user (mode \(String(info.st_mode & 0o777, radix: 8))); set SocketMode=0660 and SocketGroup=mysql in keybroker.socket", isMisconfiguration: true)
            }
            // Whoever can write its directory can put another socket in its place for new clients.
            do {
                try PathTrust.checkDirectory(directory(of: path), create: false, privateMode: false)
            } catch {
                throw Failure(description: "the directory of the socket passed by systemd: \(error)", isMisconfiguration: error.errno == nil)
            }
        }
        return .inheritedDescriptor(fd)
    }

    /// Checks that `path` may be bound (call before the server binds it): its directory, and every
    /// directory above, is owned by root or keybrokerd's user and writable by no one else (so no one
    /// else can replace the socket), and no live server answers on it. A stale socket file (nothing
    /// listening) is removed.
    public static func prepareToBind(_ path: String) throws(Failure) {
        do {
            try PathTrust.checkDirectory(directory(of: path), create: false, privateMode: false)
        } catch {
            throw Failure(description: "socket directory \(error)", isMisconfiguration: error.errno == nil)
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw Failure(description: "cannot use socket path \(path): \(errnoText(errno))")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw Failure(description: "\(path) exists and is not a socket; refusing to replace it", isMisconfiguration: true)
        }
        let fd = CKB_unix_connect(path)
        if fd >= 0 {
            close(fd)
            throw Failure(description: "another server is listening on \(path); stop it first (is keybrokerd already running?)")
        }
        guard -fd == ECONNREFUSED else {
            throw Failure(description: "cannot check socket \(path): \(errnoText(-fd))")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove stale socket \(path): \(errnoText(errno))")
        }
    }
}
