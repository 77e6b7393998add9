import Glibc

/// Principals resolved to uids and gids, at start-up and again every `access_refresh_ms` (and on
/// SIGHUP), so authenticating a peer needs no name-service lookup on the request path and a user
/// taken out of a group loses access without a restart.
public struct AccessList: Sendable, Equatable {
    public var uids: Set<UInt32> = []
    public var gids: Set<UInt32> = []

    public init(uids: Set<UInt32> = [], gids: Set<UInt32> = []) {
        self.uids = uids
        self.gids = gids
    }

    /// A peer is in the list by uid, by its primary gid, or as a listed member of a listed group.
    public func contains(uid: UInt32, gid: UInt32) -> Bool {
        uids.contains(uid) || gids.contains(gid)
    }

    public mutating func formUnion(_ other: AccessList) {
        uids.formUnion(other.uids)
        gids.formUnion(other.gids)
    }

    /// A name that is not a user or group on this system, or that the name service could not look up.
    public struct UnknownPrincipal: Error, Sendable, CustomStringConvertible {
        public var principal: Principal
        /// Set when the lookup itself failed (NSS error), not when the name does not exist.
        public var failure: String?

        public var description: String {
            if let failure { return failure }
            switch principal {
            case let .group(name): return "no group named \"\(name)\" on this system"
            case let .user(name): return "no user named \"\(name)\" on this system"
            case .uid: return "\(principal) is not known on this system"
            }
        }
    }

    /// At start-up: looks every name up (passwd and group databases); a group brings its listed
    /// members. Every name must exist.
    public init(resolving principals: [Principal]) throws(UnknownPrincipal) {
        var list = AccessList()
        for principal in principals {
            switch Self.lookUp(principal) {
            case let .found(entries): list.formUnion(entries)
            case .missing: throw UnknownPrincipal(principal: principal)
            case let .failed(message): throw UnknownPrincipal(principal: principal, failure: message)
            }
        }
        self = list
    }

    /// While running: a name that no longer exists grants nothing (and is named in `missing`); nil
    /// when the name service failed, so the caller keeps the list it has.
    public static func refresh(_ principals: [Principal]) -> (list: AccessList, missing: [String])? {
        var list = AccessList()
        var missing: [String] = []
        for principal in principals {
            switch lookUp(principal) {
            case let .found(entries): list.formUnion(entries)
            case .missing: missing.append(principal.description)
            case .failed: return nil
            }
        }
        return (list, missing)
    }

    enum Lookup {
        case found(AccessList)
        case missing
        case failed(String)
    }

    /// Thread-safe lookups (getpwnam_r, getgrnam_r): the refresh runs beside other threads.
    static func lookUp(_ principal: Principal) -> Lookup {
        switch principal {
        case let .uid(uid):
            return .found(AccessList(uids: [uid]))
        case let .user(name):
            switch userID(name) {
            case let .success(uid?): return .found(AccessList(uids: [uid]))
            case .success(nil): return .missing
            case let .failure(error): return .failed("cannot look up user \"\(name)\": \(String(cString: strerror(error.code)))")
            }
        case let .group(name):
            var entry = group()
            var result: UnsafeMutablePointer<group>?
            var buffer: [CChar] = []
            let code = withGrowingBuffer(&buffer, initial: 16384) { getgrnam_r(name, &entry, $0, $1, &result) }
            if notFoundCodes.contains(code) { return .missing }
            guard code == 0 else { return .failed("cannot look up group \"\(name)\": \(String(cString: strerror(code)))") }
            guard result != nil else { return .missing }
            // entry's strings live in buffer: read them while it is pinned
            return buffer.withUnsafeBufferPointer { _ in
                var list = AccessList(gids: [entry.gr_gid])
                var members: [String] = []
                if var member = entry.gr_mem {
                    while let memberName = member.pointee {
                        members.append(String(cString: memberName))
                        member += 1
                    }
                }
                for member in members {
                    switch userID(member) {
                    case let .success(uid?): list.uids.insert(uid)
                    case .success(nil): break
                    case let .failure(error): return .failed("cannot look up user \"\(member)\" of group \"\(name)\": \(String(cString: strerror(error.code)))")
                    }
                }
                return .found(list)
            }
        }
    }

    /// Runs a reentrant name-service call with a buffer it may ask to grow (ERANGE), up to 16 MiB.
    private static func withGrowingBuffer(_ buffer: inout [CChar], initial: Int,
                                          _ call: (UnsafeMutablePointer<CChar>, Int) -> Int32) -> Int32 {
        var size = initial
        while true {
            buffer = [CChar](repeating: 0, count: size)
            let code = buffer.withUnsafeMutableBufferPointer { call($0.baseAddress!, $0.count) }
            guard code == ERANGE, size < 1 << 24 else { return code }
            size *= 4
        }
    }

    /// What getpwnam_r(3) and getgrnam_r(3) may return for a name that does not exist.
    private static let notFoundCodes: Set<Int32> = [ENOENT, ESRCH, EBADF, EPERM]

    struct LookupError: Error {
        var code: Int32
    }

    private static func userID(_ name: String) -> Result<UInt32?, LookupError> {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer: [CChar] = []
        let code = withGrowingBuffer(&buffer, initial: 4096) { getpwnam_r(name, &entry, $0, $1, &result) }
        if notFoundCodes.contains(code) { return .success(nil) }
        guard code == 0 else { return .failure(LookupError(code: code)) }
        return .success(result == nil ? nil : entry.pw_uid)
    }
}
