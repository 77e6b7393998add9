/// Where a service is reached: the URL to send to, and the Host value and path that are signed.
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public let url: String
    /// `host` or `host:port` when the port is not the scheme's default; lower case.
    public let host: String
    /// The path to sign, "/" when none.
    public let path: String
    public let isHTTPS: Bool

    /// Accepts `https://host[:port][/path]` or `http://…`; nil for anything else.
    public init?(parsing text: String) {
        let lower = text.lowercased()
        let scheme: String
        if lower.hasPrefix("https://") { scheme = "https" } else if lower.hasPrefix("http://") { scheme = "http" } else { return nil }
        let rest = text.dropFirst(scheme.count + 3)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let pathPart = rest.dropFirst(authority.count).prefix { $0 != "?" && $0 != "#" }
        guard !authority.isEmpty, !authority.contains("@"), !authority.contains(where: { $0 == " " || $0.isNewline }) else { return nil }
        var hostPart = Substring(authority)
        var port: Int?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            hostPart = authority[...close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()), (1...65535).contains(value) else { return nil }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            guard let value = Int(authority[authority.index(after: colon)...]), (1...65535).contains(value) else { return nil }
            port = value
        }
        guard !hostPart.isEmpty else { return nil }
        let defaultPort = scheme == "https" ? 443 : 80
        let host = hostPart.lowercased() + (port.map { $0 == defaultPort ? "" : ":\($0)" } ?? "")
        let path = pathPart.isEmpty ? "/" : String(pathPart)
        self.url = "\(scheme)://\(host)\(path)"
        self.host = host
        self.path = path
        self.isHTTPS = scheme == "https"
    }

    public var description: String { url }
}
