import Glibc

/// Principals resolved to uids and gids once, at start-up, so authenticating a peer needs no
/// name-service lookup on the request path.
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

    /// A name that is not a user or group on this system.
    public struct UnknownPrincipal: Error, Sendable, CustomStringConvertible {
        public var principal: Principal

        public var description: String {
            switch principal {
            case let .group(name): "no group named \"\(name)\" on this system"
            case let .user(name): "no user named \"\(name)\" on this system"
            case .uid: "\(principal) is not known on this system"
            }
        }
    }

    /// Looks every name up (passwd and group databases); a group brings its listed members.
    public init(resolving principals: [Principal]) throws(UnknownPrincipal) {
        var list = AccessList()
        for principal in principals {
            switch principal {
            case let .uid(uid):
                list.uids.insert(uid)
            case let .user(name):
                guard let entry = getpwnam(name) else { throw UnknownPrincipal(principal: principal) }
                list.uids.insert(entry.pointee.pw_uid)
            case let .group(name):
                guard let entry = getgrnam(name) else { throw UnknownPrincipal(principal: principal) }
                list.gids.insert(entry.pointee.gr_gid)
                var members: [String] = []
                if var member = entry.pointee.gr_mem {
                    while let name = member.pointee {
                        members.append(String(cString: name))
                        member += 1
                    }
                }
                for member in members {
                    if let user = getpwnam(member) { list.uids.insert(user.pointee.pw_uid) }
                }
            }
        }
        self = list
    }
}
