import Logging
import Synchronization

/// The daemon's log level, one value for every logger in the process, so a reload (SIGHUP) that
/// changes `log_level` takes effect on loggers that were copied long before.
final class LogLevelSwitch: Sendable {
    static let shared = LogLevelSwitch()

    private let index = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info) ?? 2)

    var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
