import CKeybrokerSystem
import Glibc
import SystemSupport

/// One daemon per state_dir: two would each number new versions of the same key from their own
/// index and tell clients different latest versions. An exclusive flock on
/// `<state_dir>/.keybrokerd.lock`, held until the process exits (the kernel drops it then, also
/// after SIGKILL); the file holds the holder's pid for the refusal line.
enum StateDirectoryLock {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A name no instance directory can have (instance names never start with ".").
    static let fileName = ".keybrokerd.lock"

    static func acquire(stateDirectory: String) throws(Failure) {
        let path = "\(stateDirectory)/\(fileName)"
        let fd = CKB_lock_file(path)
        if -fd == EWOULDBLOCK {
            throw Failure(description: "\(stateDirectory) is in use by another keybrokerd\(holder(path).map { " (pid \($0))" } ?? "") that holds \(path); two daemons on one state_dir would give the same key different versions: stop the other one, or give this one its own state_dir")
        }
        guard fd >= 0 else {
            throw Failure(description: "cannot lock \(path): \(errnoText(-fd))\(-fd == EINVAL ? " (it is not a regular file; remove it)" : "")")
        }
        let pid = "\(getpid())\n"
        _ = CKB_write_small_file(path, pid, pid.utf8.count)
        // The descriptor stays open for the life of the process: closing it would drop the lock.
    }

    private static func holder(_ path: String) -> Int32? {
        var bytes = [UInt8](repeating: 0, count: 16)
        guard let file = try? OpenedFile(path: path, followSymlinks: false), let count = try? file.read(into: &bytes), count > 0 else {
            return nil
        }
        return Int32(String(decoding: bytes.prefix(count).filter { (0x30...0x39).contains($0) }, as: UTF8.self))
    }
}
