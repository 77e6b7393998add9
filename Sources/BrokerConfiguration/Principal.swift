import Glibc

/// Who may connect: a user name, `@group`, or a numeric uid (as a string or an integer).
public enum Principal: Sendable, Equatable, CustomStringConvertible {
    case user(String)
    case group(String)
    case uid(UInt32)

    public init?(parsing text: String) {
        if text.hasPrefix("@") {
            let name = String(text.dropFirst())
            guard !name.isEmpty else { return nil }
            self = .group(name)
        } else if let first = text.first, first.isNumber, let uid = UInt32(text) {
            self = .uid(uid)
        } else if !text.isEmpty {
            self = .user(text)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case let .user(name): name
        case let .group(name): "@\(name)"
        case let .uid(uid): "\(uid)"
        }
    }
}

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

    public static func resolve(_ principals: [Principal], file: String, key: String) throws(ConfigError) -> AccessList {
        var list = AccessList()
        for principal in principals {
            switch principal {
            case let .uid(uid):
                list.uids.insert(uid)
            case let .user(name):
                guard let entry = getpwnam(name) else {
                    throw ConfigError(file: file, key: key, "no user named \"\(name)\" on this system")
                }
                list.uids.insert(entry.pointee.pw_uid)
            case let .group(name):
                guard let entry = getgrnam(name) else {
                    throw ConfigError(file: file, key: key, "no group named \"\(name)\" on this system")
                }
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
        return list
    }
}
