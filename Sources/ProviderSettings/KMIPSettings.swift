/// An `[instances.NAME]` table with `provider = "kmip"`, as parsed from the configuration.
public struct KMIPSettings: Sendable, Equatable {
    /// `host:port`, `[v6 address]:port`; the port defaults to 5696 (IANA's KMIP port).
    public struct Server: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: String

        public init(host: String, port: String) {
            self.host = host
            self.port = port
        }

        public init?(parsing text: String) {
            let text = String(text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
            var host: Substring
            var port: Substring = "5696"
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]") else { return nil }
                host = text[text.index(after: text.startIndex)..<close]
                let rest = text[text.index(after: close)...]
                if !rest.isEmpty {
                    guard rest.hasPrefix(":") else { return nil }
                    port = rest.dropFirst()
                }
            } else if let colon = text.lastIndex(of: ":") {
                guard text.firstIndex(of: ":") == colon else { return nil }  // a bare IPv6 address needs brackets
                host = text[..<colon]
                port = text[text.index(after: colon)...]
            } else {
                host = Substring(text)
            }
            guard !host.isEmpty, host.utf8.count <= 253,
                  host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_") }),
                  let number = Int(port), (1...65535).contains(number) else { return nil }
            self.host = String(host)
            self.port = String(number)
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public enum ClientKeySource: Sendable, Equatable {
        case file(String)
        /// `$CREDENTIALS_DIRECTORY/NAME` (systemd LoadCredential=).
        case credential(String)
    }

    public var servers: [Server]
    public var caFile: String
    public var clientCertificateFile: String
    public var clientKey: ClientKeySource
    /// A Unique Identifier or `name:NAME`. Without it no new data keys are created.
    public var masterKeyID: String?
    /// Connect, handshake and each answer; every wait is bounded by it.
    public var requestTimeoutMilliseconds: Int
    public var maxRetries: Int
    /// Connections (and so requests in flight) at most.
    public var concurrency: Int
    /// Decrypt requests sent together in one message when many wait (warm-up); 1 sends each alone.
    public var batchSize: Int
    /// The highest KMIP version offered (`kmip_protocol_version`), for a server whose newer
    /// version misbehaves.
    public var maximumVersion: String = "1.4"

    public init(servers: [Server], caFile: String, clientCertificateFile: String, clientKey: ClientKeySource,
                masterKeyID: String? = nil, requestTimeoutMilliseconds: Int = 5000, maxRetries: Int = 3,
                concurrency: Int = 32, batchSize: Int = 16) {
        self.servers = servers
        self.caFile = caFile
        self.clientCertificateFile = clientCertificateFile
        self.clientKey = clientKey
        self.masterKeyID = masterKeyID
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.maxRetries = maxRetries
        self.concurrency = concurrency
        self.batchSize = batchSize
    }

    /// `kmip_server`: one or more servers, comma-separated, tried in order.
    public static func parseServers(_ text: String) -> [Server]? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        var servers: [Server] = []
        for part in parts {
            guard let server = Server(parsing: String(part)) else { return nil }
            servers.append(server)
        }
        return servers.isEmpty ? nil : servers
    }
}

/// How the configuration names the master key: its Unique Identifier, or `name:NAME` (Locate).
public enum MasterKeyReference: Sendable, Equatable, CustomStringConvertible {
    case uniqueIdentifier(String)
    case name(String)

    public init?(parsing text: String) {
        guard !text.isEmpty, text.utf8.count <= 1024, !text.contains(where: { $0.isNewline }) else { return nil }
        if text.hasPrefix("name:") {
            let name = String(text.dropFirst(5))
            guard !name.isEmpty else { return nil }
            self = .name(name)
        } else {
            guard !text.contains(where: { $0.isWhitespace }) else { return nil }
            self = .uniqueIdentifier(text)
        }
    }

    public var description: String {
        switch self {
        case let .uniqueIdentifier(id): id
        case let .name(name): "name:\(name)"
        }
    }
}
