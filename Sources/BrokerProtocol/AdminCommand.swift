/// What an ADMIN request (0x06) asks for. On the wire its body is `command:string`, the verb, one
/// space and the argument (docs/protocol.md); this type is the only place that text is read or
/// written, so the server sees typed commands and never parses words.
public enum AdminCommand: Sendable, Equatable {
    /// `rewrap MASTER_KEY`: every stored key of the bound instance re-encrypted under another master key.
    case rewrap(masterKey: String)
    /// `rewrap-into INSTANCE`: every stored key version copied into another instance and its provider.
    case rewrapInto(instance: String)
    /// `unlock TOKEN_CODE`: two-factor start with a code from the instance's MFA device.
    case unlock(tokenCode: String)
    /// `metrics FORMAT`: the daemon's metrics; the one format is `prometheus` (text exposition).
    case metrics(format: String)
    /// `store status|push|verify`: the bound instance's shared key store.
    case store(StoreAction)

    public enum StoreAction: String, Sendable, Equatable, CaseIterable {
        /// Objects, versions only this host has, the last sync.
        case status
        /// Upload the cached versions the store lacks (never overwriting).
        case push
        /// Every object unwrapped and compared with the key served and the cached file.
        case verify
    }

    /// The longest command text, in bytes.
    public static let maximumLength = 4096
    /// What an unknown verb is told.
    static let expected = "expected \"rewrap MASTER_KEY\", \"rewrap-into INSTANCE\", \"unlock TOKEN_CODE\", \"metrics prometheus\" or \"store status|push|verify\""

    public var verb: String {
        switch self {
        case .rewrap: "rewrap"
        case .rewrapInto: "rewrap-into"
        case .unlock: "unlock"
        case .metrics: "metrics"
        case .store: "store"
        }
    }

    public var argument: String {
        switch self {
        case let .rewrap(value), let .rewrapInto(value), let .unlock(value), let .metrics(value): value
        case let .store(action): action.rawValue
        }
    }

    /// The `command:string` of the request body.
    public var text: String { "\(verb) \(argument)" }

    /// Reads `command:string`. A command that is not one of these is an error that leaves the
    /// connection open: the frame was sound, only the words were wrong.
    init(text: String, requestID: UInt32, op: UInt8) throws(ProtocolError) {
        func refuse(_ message: String) -> ProtocolError {
            ProtocolError(requestID: requestID, op: op, message: message, closesConnection: false)
        }
        // Admin words end up in log lines: printable ASCII only, and never echoed otherwise.
        let bytes = text.utf8
        guard bytes.count <= Self.maximumLength, bytes.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw refuse("an admin command is at most \(Self.maximumLength) printable ASCII characters; got \(bytes.count) bytes")
        }
        let words = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let verb = words[0]
        guard words.count == 2, !words[1].isEmpty, !words[1].contains(" ") else {
            let known = ["rewrap", "rewrap-into", "unlock", "metrics", "store"].contains(verb)
            throw refuse(known ? "admin command \"\(verb)\" takes one argument after one space; \(Self.expected)"
                               : "unknown admin command \"\(verb.prefix(64))\"; \(Self.expected)")
        }
        switch verb {
        case "rewrap": self = .rewrap(masterKey: words[1])
        case "rewrap-into": self = .rewrapInto(instance: words[1])
        case "unlock": self = .unlock(tokenCode: words[1])
        case "metrics":
            guard words[1] == "prometheus" else { throw refuse("metrics are written in one format: \"metrics prometheus\"") }
            self = .metrics(format: words[1])
        case "store":
            guard let action = StoreAction(rawValue: words[1]) else {
                throw refuse("admin command \"store\" takes status, push or verify, not \"\(words[1].prefix(64))\"")
            }
            self = .store(action)
        default: throw refuse("unknown admin command \"\(verb.prefix(64))\"; \(Self.expected)")
        }
    }
}
