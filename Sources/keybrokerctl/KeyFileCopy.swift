import Glibc
import KeyStore
import BrokerProtocol
import SystemSupport

/// Copies one version between directories: never replaces a different file. Returns what happened.
enum CopyOutcome { case copied, identical, conflict }

func copyVersion(_ ref: KeyRef, from source: KeyFileDirectory, to target: KeyFileDirectory,
                 owner: (uid: uid_t, gid: gid_t)?) throws(CommandError) -> CopyOutcome {
    let bytes: [UInt8]
    do { bytes = try source.read(ref) } catch { throw CommandError(error.description) }
    if target.exists(ref) {
        let existing: [UInt8]
        do { existing = try target.read(ref) } catch { throw CommandError(error.description) }
        return existing == bytes ? .identical : .conflict
    }
    do {
        try target.writeNew(ref, bytes: bytes, owner: owner)
    } catch {
        if error.errno == EEXIST { return .conflict }
        throw CommandError(error.description)
    }
    return .copied
}

/// Owner of a directory, to give copied files when running as root.
func directoryOwner(_ path: String) -> (uid: uid_t, gid: gid_t)? {
    var info = stat()
    guard getuid() == 0, stat(path, &info) == 0 else { return nil }
    return (info.st_uid, info.st_gid)
}

func prepareDirectory(_ path: String, owner: (uid: uid_t, gid: gid_t)?) throws(CommandError) {
    do {
        try PrivateDirectory.create(path, owner: owner)
    } catch {
        throw CommandError(error.errno == ENOTDIR ? "\(path) is not a directory" : "cannot create \(path): \(error.reason)")
    }
}

/// Every version stored in `directory`, ordered by key id, then version.
func storedVersions(in directory: KeyFileDirectory) throws(CommandError) -> [KeyRef] {
    do {
        return KeyRef.all(in: try directory.scan(removingLeftovers: false))
    } catch {
        throw CommandError(error.description)
    }
}

/// Copies `refs` (import and export), a line for each: `copied` names what a new copy is. Returns
/// the versions the target now holds and how many were left alone because the target has a
/// different file.
func copyVersions(_ refs: [KeyRef], from source: KeyFileDirectory, to target: KeyFileDirectory,
                  copied: String) throws(CommandError) -> (present: [KeyRef], conflicts: Int) {
    let owner = directoryOwner(target.path)
    var present: [KeyRef] = []
    var conflicts = 0
    for ref in refs {
        let name = "\(target.prefix).\(ref.keyID).\(ref.version)"
        switch try copyVersion(ref, from: source, to: target, owner: owner) {
        case .copied:
            print("\(name): \(copied)")
            present.append(ref)
        case .identical:
            print("\(name): already present (identical)")
            present.append(ref)
        case .conflict:
            print("\(name): CONFLICT: \(target.filePath(ref)) exists with different contents; left as it is")
            conflicts += 1
        }
    }
    return (present, conflicts)
}
