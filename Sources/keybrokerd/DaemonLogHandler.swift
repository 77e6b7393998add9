import CKeybrokerSystemd
import Glibc
import Logging
import SystemSupport

/// One line per event. Under systemd (stderr connected to the journal) entries go to the journal
/// natively with structured fields; if the journal refuses one, it is written to stderr instead so
/// nothing is lost. Elsewhere: stderr with a timestamp.
struct DaemonLogHandler: LogHandler {
    /// Shared by every handler (`LogLevelSwitch`): a reload changes it for all loggers at once.
    var logLevel: Logger.Level {
        get { LogLevelSwitch.shared.level }
        set { LogLevelSwitch.shared.level = newValue }
    }
    var metadata: Logger.Metadata = [:]
    let useJournal: Bool

    init(useJournal: Bool) {
        self.useJournal = useJournal
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Stable MESSAGE_IDs, one per kind of event, so `journalctl MESSAGE_ID=…` finds them all.
    static let messageIDs: [String: String] = [
        "key_generated": "5b1c7e2a9d0f4c3e8a6b2d4f1e3c5a7b",
        "key_loaded": "6c2d8f3b0e1a4d5f9b7c3e5a2f4d6b8c",
        "key_rotated": "7d3e9a4c1f2b4e6a8c8d4f6b3a5e7c9d",
        "key_failed": "8e4fab5d2a3c4f7b9d9e5a7c4b6f8dae",
        "peer_denied": "9f5abc6e3b4d4a8cae0f6b8d5c7a9ebf",
        "peer_malformed": "a06bcd7f4c5e4b9dbf1a7c9e6d8bafc0",
        "started": "b17cde8a5d6f4cae802b8daf7e9cb0d1",
        "stopping": "c28def9b6e7a4dbf913c9eb08fadc1e2",
        "aws_call": "d39ef0ac7f8b4ec0a24dafc19abed2f3",
        "reloaded": "e4af01bd8a9c4fd1b35ebad2abcfe304",
        "reload_failed": "f5b012ce9bad4ae2c46fcbe3bcd0f415",
        "instance_retired": "06c123df0cbe4bf3d57adcf4cde10526",
    ]

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        if useJournal && sendToJournal(event: event, metadata: merged) { return }
        writeToStderr(event: event, metadata: merged)
    }

    private func sendToJournal(event: LogEvent, metadata: Logger.Metadata) -> Bool {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=keybrokerd",
        ]
        let names: [(String, String)] = [("instance", "KEYBROKER_INSTANCE"), ("key_id", "KEYBROKER_KEY_ID"),
                                          ("version", "KEYBROKER_KEY_VERSION"), ("peer_uid", "KEYBROKER_PEER_UID")]
        for (key, field) in names {
            if let value = metadata[key] { fields.append("\(field)=\(value)") }
        }
        if let event = metadata["event"], let id = Self.messageIDs["\(event)"] {
            fields.append("MESSAGE_ID=\(id)")
        }
        var pointers = fields.map { strdup($0) }
        defer { pointers.forEach { free($0) } }
        let result = pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { CKB_journal_send($0.baseAddress, Int32($0.count)) }
        }
        return result == 0
    }

    private func writeToStderr(event: LogEvent, metadata: Logger.Metadata) {
        var line = ""
        if !useJournal {
            line += CivilTime(unix: unixNow()).iso8601 + " "
        }
        line += "keybrokerd: \(event.level == .info ? "note" : event.level.rawValue): "
        if let instance = metadata["instance"] { line += "[\(instance)] " }
        line += "\(event.message)\n"
        writeToStandardError(line)
    }
}

/// One write(2) per line, so lines from several threads never interleave.
func writeToStandardError(_ line: String) {
    var bytes = Array(line.utf8)
    var offset = 0
    while offset < bytes.count {
        let count = bytes[offset...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { return }
        offset += count
    }
    bytes.removeAll()
}
