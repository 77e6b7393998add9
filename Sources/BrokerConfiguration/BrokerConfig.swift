import BrokerPolicy
import Glibc
import SystemSupport
import TOMLKit

/// keybrokerd's configuration (`/etc/keybroker/keybroker.toml`).
public struct BrokerConfig: Sendable {
    public static let defaultPath = "/etc/keybroker/keybroker.toml"

    public enum LogLevel: String, Sendable, CaseIterable {
        case error, warning, info, debug, trace

        /// Ours, and aws_key_management_log_level's (Off, Fatal, Error, Warn, Info, Debug, Trace),
        /// in any case. That variable set the AWS SDK's chatter only: the plugin's own errors were
        /// always logged. So Off and Fatal mean "errors only" here: a daemon that holds the keys
        /// never goes silent about failing to serve them.
        public init?(setting: String) {
            switch setting.lowercased() {
            case "off", "fatal", "error": self = .error
            case "warn", "warning": self = .warning
            case "info": self = .info
            case "debug": self = .debug
            case "trace": self = .trace
            default: return nil
            }
        }
    }

    public var file: String
    public var socketPath: String
    public var stateDirectory: String
    public var logLevel: LogLevel
    public var admins: [Principal]
    /// In the order of the file.
    public var instances: [InstanceConfig]
    public var limits: Limits
    /// `metrics_listen = "127.0.0.1:9464"`: where the metrics are served over HTTP; nil: not at all.
    public var metricsListen: ListenAddress?

    public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

        /// "127.0.0.1:9464", "[::1]:9464", "localhost:9464".
        public init?(parsing text: String) {
            let host: Substring, port: Substring
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
                host = text[text.index(after: text.startIndex)..<close]
                port = text[text.index(close, offsetBy: 2)...]
            } else {
                guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
                host = text[..<colon]
                port = text[text.index(after: colon)...]
            }
            guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:".contains($0)) }),
                  let number = Int(port), (1...65535).contains(number) else { return nil }
            self.host = String(host)
            self.port = number
        }
    }

    /// Far beyond any real configuration (a thousand instances take a few hundred KiB).
    public static let maximumFileSize = 4 << 20

    public func instance(named name: String) -> InstanceConfig? {
        instances.first { $0.name == name }
    }

    /// Reads and parses the file. It names who may have keys, so it must be owned like a master
    /// key (root or keybrokerd's user, writable by no one else, no symbolic link on the way), and
    /// it is opened without blocking: a FIFO in its place is refused, not waited on.
    public static func load(path: String) throws(ConfigError) -> BrokerConfig {
        let bytes: [UInt8]
        do {
            // It names who may have keys: owned like a master key (PathTrust), and opened
            // without blocking, so a FIFO in its place is refused rather than waited on.
            bytes = try PathTrust.readFile(path, privateMode: false, limit: maximumFileSize)
        } catch {
            switch error.errno {
            case EFBIG?: throw ConfigError(file: path, key: nil, "cannot read the configuration: it is larger than \(maximumFileSize) bytes")
            case let code?: throw ConfigError(file: path, key: nil, "cannot read the configuration: \(errnoText(code))")
            case nil: throw ConfigError(file: path, key: nil, "cannot use the configuration: \(error)")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, key: nil, "the configuration is not valid UTF-8")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> BrokerConfig {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: file, key: nil, "line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigError(file: file, key: nil, "\(error)")
        }
        var reader = TableReader(table: table, file: file, path: "")
        let socketPath = try reader.string("socket") ?? "/run/keybroker/keybroker.sock"
        let stateDirectory = try reader.string("state_dir") ?? "/var/lib/keybroker"
        let levelText = try reader.string("log_level") ?? "info"
        guard let logLevel = LogLevel(setting: levelText) else {
            throw reader.error("log_level", "must be one of \(LogLevel.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")) (or aws_key_management's Off, Fatal, Warn), not \"\(levelText)\"")
        }
        let admins = try reader.principals("admins") ?? []
        var limits = Limits()
        if let value = try reader.integer("max_connections", in: 1...1_000_000) { limits.maxConnections = value }
        if let value = try reader.integer("max_connections_per_uid", in: 1...1_000_000) { limits.maxConnectionsPerUID = value }
        if let value = try reader.integer("max_unauthenticated_per_uid", in: 1...1_000_000) { limits.maxUnauthenticatedPerUID = value }
        if let value = try reader.integer("max_in_flight_per_connection", in: 1...65536) { limits.maxInFlightPerConnection = value }
        if let value = try reader.integer("max_output_bytes_per_connection", in: 65540...(1 << 30)) { limits.maxOutputBytesPerConnection = value }
        if let value = try reader.integer("peer_log_interval_ms", in: 100...3_600_000) { limits.peerLogIntervalMilliseconds = value }
        if let value = try reader.integer("access_refresh_ms", in: 100...86_400_000) { limits.accessRefreshMilliseconds = value }
        if let value = try reader.integer("frame_timeout_ms", in: 100...3_600_000) { limits.frameTimeoutMilliseconds = value }
        if let value = try reader.integer("idle_timeout_ms", in: 0...86_400_000) { limits.idleTimeoutMilliseconds = value }
        var metricsListen: ListenAddress?
        if let text = try reader.string("metrics_listen") {
            guard let address = ListenAddress(parsing: text) else {
                throw reader.error("metrics_listen", "must be HOST:PORT, like \"127.0.0.1:9464\" or \"[::1]:9464\", not \"\(text)\"")
            }
            metricsListen = address
        }
        guard socketPath.hasPrefix("/") else { throw reader.error("socket", "must be an absolute path") }
        guard socketPath.utf8.count < 108 else { throw reader.error("socket", "is longer than a Unix socket path may be (107 bytes)") }
        guard stateDirectory.hasPrefix("/") else { throw reader.error("state_dir", "must be an absolute path") }

        var instances: [InstanceConfig] = []
        if let instancesTable = try reader.table("instances") {
            var instancesReader = TableReader(table: instancesTable, file: file, path: "instances.")
            for name in instancesTable.keys {
                guard let instanceTable = try instancesReader.table(name) else { continue }
                instances.append(try InstanceConfig.parse(name: name, table: instanceTable, file: file))
            }
            instancesReader.consumedAll = true
        }
        try reader.rejectUnknownKeys()
        guard !instances.isEmpty else {
            throw ConfigError(file: file, key: "instances", "no instance is configured; add an [instances.default] table")
        }
        return BrokerConfig(file: file, socketPath: socketPath, stateDirectory: stateDirectory, logLevel: logLevel,
                            admins: admins, instances: instances, limits: limits, metricsListen: metricsListen)
    }
}
