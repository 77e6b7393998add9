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
