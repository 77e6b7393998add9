import BrokerProtocol
import CKeybrokerSystem
import Glibc
import SystemSupport

/// One instance's directory of wrapped data keys, `<prefix>.<id>.<version>`.
///
/// New versions are written crash-safely and never replace an existing file: the bytes go to a
/// temporary file created with O_EXCL, which is fsynced, then hard-linked to its final name (link
/// fails if the name exists, where rename would replace it), then the temporary name is removed and
/// the directory fsynced. A crash leaves either no version or a complete one, plus at most a
/// temporary file that `scan` removes.
public struct KeyFileDirectory: KeyFileStore {
    public let path: String
    public let prefix: String
    static let temporaryMarker = ".tmp-"

    public init(path: String, prefix: String) {
        self.path = path
        self.prefix = prefix
    }

    /// The key-set identity's file in the directory (not a key file name: `parse` ignores it).
    public static let keySetFileName = "key-set"

    public var keySetPath: String { "\(path)/\(Self.keySetFileName)" }

    public func filePath(_ ref: KeyRef) -> String {
        "\(path)/\(prefix).\(ref.keyID).\(ref.version)"
    }

    public var location: String { path }

    public func location(of ref: KeyRef) -> String { filePath(ref) }

    /// Creates the directory (mode 0700) when missing, and checks that it, and every directory
    /// above, is owned by root or keybrokerd's user, writable by no one else and no symbolic link:
    /// whoever could write it could move the keys aside and make the broker create new ones.
    public func prepare() throws(StorageError) {
        do {
            try PathTrust.checkDirectory(path, create: true, privateMode: false)
        } catch {
            throw StorageError(path: path, refusal: "key directory \(error)")
        }
    }

    /// The versions present, per key id, ascending. Removes temporary files left by a crash unless
    /// told not to (a scan while the daemon runs must leave the writes in flight alone). An entry
    /// named like a key file that is not a regular file (a FIFO would block a reader, a symbolic
    /// link would point elsewhere) is refused with its path.
    public func scan(removingLeftovers: Bool = true) throws(StorageError) -> [UInt32: [UInt32]] {
        guard let directory = opendir(path) else { throw StorageError(path: path, operation: "open directory", errno: errno) }
        defer { closedir(directory) }
        var found: [UInt32: [UInt32]] = [:]
        var leftovers: [String] = []
        errno = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix(Self.temporaryMarker) {
                leftovers.append(name)
            } else if let ref = parse(name) {
                var mode: UInt32 = 0
                var owner: UInt32 = 0
                let result = CKB_stat_entry(dirfd(directory), name, &mode, &owner)
                if result != 0 { throw StorageError(path: "\(path)/\(name)", operation: "examine", errno: -result) }
                if mode & UInt32(S_IFMT) != UInt32(S_IFREG) {
                    throw StorageError(path: "\(path)/\(name)", refusal: Self.notRegular(path: "\(path)/\(name)", mode: mode, owner: owner))
                }
                found[ref.keyID, default: []].append(ref.version)
            }
        }
        if removingLeftovers {
            for name in leftovers { unlink("\(path)/\(name)") }
        }
        return found.mapValues { $0.sorted() }
    }

    public func versions(of keyID: UInt32) throws(StorageError) -> [UInt32] {
        guard exists(KeyRef(keyID: keyID, version: 1)) else { return [] }
        return try scan(removingLeftovers: false)[keyID] ?? []
    }

    /// `<prefix>.<id>.<version>` with decimal numbers, no leading zeros, neither zero.
    public func parse(_ name: String) -> KeyRef? {
        guard name.hasPrefix(prefix + ".") else { return nil }
        let parts = name.dropFirst(prefix.count + 1).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let id = Self.number(parts[0]), let version = Self.number(parts[1]) else { return nil }
        return KeyRef(keyID: id, version: version)
    }

    private static func number(_ text: Substring) -> UInt32? {
        guard let first = text.first, first != "0", text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        guard let value = UInt32(text), value != 0 else { return nil }
        return value
    }

    public func read(_ ref: KeyRef) throws(StorageError) -> [UInt8] {
        let path = filePath(ref)
        do {
            // No link followed, no wait on a FIFO: then only a regular file is read.
            let file = try OpenedFile(path: path, followSymlinks: false)
            let info = try file.status()
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw StorageError(path: path, refusal: Self.notRegular(path: path, mode: UInt32(info.st_mode), owner: info.st_uid))
            }
            return try file.readAll(limit: 1 << 20)
        } catch let error as StorageError {
            throw error
        } catch let error as SystemError {
            throw StorageError(error)
        } catch {
            throw StorageError(path: path, operation: "read", errno: EIO)
        }
    }

    public func exists(_ ref: KeyRef) -> Bool {
        var info = stat()
        return lstat(filePath(ref), &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    public func writeNew(_ ref: KeyRef, bytes: [UInt8]) throws(StorageError) {
        try writeNew(ref, bytes: bytes, owner: nil)
    }

    /// The file's modification time: a version is written once and never changed (a rewrap
    /// replaces the bytes, not the key, and keeps no earlier time: rotation age counts from it).
    public func creationTimeMilliseconds(of ref: KeyRef) -> Int64? {
        var info = stat()
        guard lstat(filePath(ref), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
    }

    /// `key-set` when present (refused when it is not a regular file or holds no identity: a
    /// damaged identity must not be replaced by a new one, which would tell every datadir that
    /// its keys are gone); else a new identity, written as a key file is (temporary, fsync, link).
    public func keySetIdentity() throws(StorageError) -> KeySetIdentity {
        if let identity = try existingKeySetIdentity() { return identity }
        return try adoptKeySetIdentity(KeySetIdentity.generate())
    }

    /// Writes `identity` as the key set's identity unless the directory has one; returns the one
    /// it has then (a shared store's cache takes the store's identity this way).
    public func adoptKeySetIdentity(_ identity: KeySetIdentity) throws(StorageError) -> KeySetIdentity {
        let temporary = try writeTemporary(name: Self.keySetFileName, bytes: identity.fileContent, owner: nil)
        defer { unlink(temporary) }
        guard link(temporary, keySetPath) == 0 else {
            guard errno == EEXIST, let theirs = try existingKeySetIdentity() else {
                throw StorageError(path: keySetPath, operation: "create", errno: errno)
            }
            return theirs
        }
        unlink(temporary)
        try syncDirectory()
        return identity
    }

    /// Nil when there is no `key-set` file.
    public func existingKeySetIdentity() throws(StorageError) -> KeySetIdentity? {
        let path = keySetPath
        let content: [UInt8]
        do {
            let file = try OpenedFile(path: path, followSymlinks: false)
            let info = try file.status()
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw StorageError(path: path, refusal: "\(path) is not a regular file (mode \(String(UInt32(info.st_mode) & 0o7777, radix: 8)), owner uid \(info.st_uid)); it must be the key set's identity, a regular file")
            }
            content = try file.readAll(limit: 4096)
        } catch let error as StorageError {
            throw error
        } catch let error as SystemError {
            if error.errno == ENOENT { return nil }
            throw StorageError(error)
        } catch {
            throw StorageError(path: path, operation: "read", errno: EIO)
        }
        guard let identity = KeySetIdentity(fileContent: content) else {
            throw StorageError(path: path, refusal: "\(path) holds no key-set identity (\(content.count) bytes; expected one line of 1 to \(KeySetIdentity.maximumLength) letters, digits, '.', '_' or '-'): restore it from a backup of this directory rather than remove it, since a new identity makes every datadir that used these keys refuse to start")
        }
        return identity
    }

    /// Writes a new version; fails with EEXIST if that version is already on disk. `owner` (uid,
    /// gid) is applied when given, so a root-run `keybrokerctl import` leaves files the daemon owns.
    public func writeNew(_ ref: KeyRef, bytes: [UInt8], owner: (uid: uid_t, gid: gid_t)?) throws(StorageError) {
        let final = filePath(ref)
        let temporary = try writeTemporary(name: "\(prefix).\(ref.keyID).\(ref.version)", bytes: bytes, owner: owner)
        defer { unlink(temporary) }
        guard link(temporary, final) == 0 else { throw StorageError(path: final, operation: "create", errno: errno) }
        unlink(temporary)
        try syncDirectory()
    }

    /// Replaces an existing version with new bytes (rewrap: the same key under another master key),
    /// atomically: the old file stays in place until the new one is complete on disk.
    public func replace(_ ref: KeyRef, bytes: [UInt8]) throws(StorageError) {
        let final = filePath(ref)
        var info = stat()
        guard lstat(final, &info) == 0 else { throw StorageError(path: final, operation: "replace", errno: errno) }
        let temporary = try writeTemporary(name: "\(prefix).\(ref.keyID).\(ref.version)", bytes: bytes, owner: (info.st_uid, info.st_gid))
        defer { unlink(temporary) }
        guard rename(temporary, final) == 0 else { throw StorageError(path: final, operation: "replace", errno: errno) }
        try syncDirectory()
    }

    /// A complete, fsynced temporary file (mode 0400) in the directory; returns its path.
    private func writeTemporary(name: String, bytes: [UInt8], owner: (uid: uid_t, gid: gid_t)?) throws(StorageError) -> String {
        let suffix = UInt64.random(in: 0...UInt64.max)
        let temporary = "\(path)/\(Self.temporaryMarker)\(name).\(String(suffix, radix: 16))"
        let fd = CKB_create_exclusive(temporary, 0o400)
        guard fd >= 0 else { throw StorageError(path: temporary, operation: "create", errno: -fd) }
        var closed = false
        var complete = false
        defer {
            if !closed { close(fd) }
            if !complete { unlink(temporary) }
        }
        if let owner, fchown(fd, owner.uid, owner.gid) != 0 {
            throw StorageError(path: temporary, operation: "chown", errno: errno)
        }
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw StorageError(path: temporary, operation: "write", errno: errno)
            }
            written += count
        }
        guard fsync(fd) == 0 else { throw StorageError(path: temporary, operation: "fsync", errno: errno) }
        closed = true
        guard close(fd) == 0 else { throw StorageError(path: temporary, operation: "close", errno: errno) }
        complete = true
        return temporary
    }

    static func notRegular(path: String, mode: UInt32, owner: UInt32) -> String {
        let kind = switch mode & UInt32(S_IFMT) {
        case UInt32(S_IFIFO): "a FIFO"
        case UInt32(S_IFLNK): "a symbolic link"
        case UInt32(S_IFDIR): "a directory"
        case UInt32(S_IFSOCK): "a socket"
        case UInt32(S_IFCHR), UInt32(S_IFBLK): "a device"
        default: "not a regular file"
        }
        return "\(path) is \(kind), not a key file (mode \(String(mode & 0o7777, radix: 8)), owner uid \(owner)); key files are regular files: move it out of the key directory"
    }

    func syncDirectory() throws(StorageError) {
        let fd = CKB_open_directory(path)
        guard fd >= 0 else { throw StorageError(path: path, operation: "open directory", errno: -fd) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StorageError(path: path, operation: "fsync directory", errno: errno) }
    }
}
