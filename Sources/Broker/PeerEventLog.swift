import Logging
import Synchronization

/// Log lines about peers (denied, refused, timed out, malformed), at most one per uid and kind of
/// event per interval. What is left out is counted and said on the next line, or by `flush`, so a
/// peer that repeats itself thousands of times a second costs a line per interval, and the count
/// is never lost.
final class PeerEventLog: Sendable {
    enum Kind: String, Sendable {
        case denied = "denied connections"
        case refused = "refused connections"
        case noHello = "connections closed for no HELLO"
        case stalledFrame = "connections closed for an incomplete frame"
        case idle = "idle connections closed"
        case unread = "connections closed for not reading their answers"
        case tooManyInFlight = "connections closed for too many requests in flight"
        case malformed = "malformed requests"
    }

    private struct Key: Hashable {
        var kind: Kind
        var uid: UInt32
    }

    private struct Entry {
        var lastLine: ContinuousClock.Instant
        var suppressed = 0
        var level: Logger.Level
        var metadata: Logger.Metadata
    }

    /// Peers tracked at once; beyond it every further uid shares one entry (uid "others").
    static let maximumEntries = 4096
    private static let othersUID = UInt32.max

    private let logger: Logger
    private let interval: Duration
    private let intervalText: String
    private let entries = Mutex<[Key: Entry]>([:])

    init(logger: Logger, interval: Duration) {
        self.logger = logger
        self.interval = interval
        let milliseconds = Int(interval / .milliseconds(1))
        self.intervalText = milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }

    /// Logs `message()` now, or counts it when a line for this uid and kind was written within the
    /// interval. `message` is only built when it is written.
    func report(_ kind: Kind, uid: UInt32, level: Logger.Level, metadata: Logger.Metadata = [:], _ message: () -> String) {
        let now = ContinuousClock.now
        let left: Int? = entries.withLock { entries in
            var key = Key(kind: kind, uid: uid)
            if entries[key] == nil && entries.count >= Self.maximumEntries { key.uid = Self.othersUID }
            if var entry = entries[key], now - entry.lastLine < interval {
                entry.suppressed += 1
                entries[key] = entry
                return nil
            }
            let suppressed = entries[key]?.suppressed ?? 0
            entries[key] = Entry(lastLine: now, level: level, metadata: metadata)
            return suppressed
        }
        guard let left else { return }
        var line = message()
        if left > 0 { line += " (\(left) more \(kind.rawValue) from \(Self.name(uid)) since the last line)" }
        logger.log(level: level, "\(line)", metadata: metadata)
    }

    /// Says how many were left out for every peer whose interval has passed, and forgets peers that
    /// have been quiet for a whole interval. Called periodically by the server.
    func flush() {
        let now = ContinuousClock.now
        let due: [(Key, Entry)] = entries.withLock { entries in
            var due: [(Key, Entry)] = []
            for (key, entry) in entries where now - entry.lastLine >= interval {
                if entry.suppressed > 0 {
                    due.append((key, entry))
                    entries[key] = Entry(lastLine: now, level: entry.level, metadata: entry.metadata)
                } else {
                    entries[key] = nil
                }
            }
            return due
        }
        for (key, entry) in due {
            logger.log(level: entry.level, "\(entry.suppressed) more \(key.kind.rawValue) from \(Self.name(key.uid)) in the last \(intervalText)",
                       metadata: entry.metadata)
        }
    }

    private static func name(_ uid: UInt32) -> String {
        uid == othersUID ? "other uids" : "uid \(uid)"
    }
}
