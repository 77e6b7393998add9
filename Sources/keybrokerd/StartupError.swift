import Broker
import BrokerConfiguration

/// Why keybrokerd did not start: one line for stderr and systemd's STATUS=, and an exit status
/// that tells systemd whether starting again can help.
struct StartupError: Error, CustomStringConvertible {
    /// EX_CONFIG (sysexits.h): the configuration, or something it names, is wrong as it stands.
    /// keybroker.service has RestartPreventExitStatus=78, so systemd stops retrying until an admin
    /// has fixed it.
    static let configurationExitStatus: Int32 = 78
    /// Anything that may pass by itself (I/O, a socket in use, a metadata service that is not up
    /// yet): systemd restarts the daemon.
    static let transientExitStatus: Int32 = 1

    var message: String
    var exitStatus: Int32

    init(_ message: String, exitStatus: Int32 = transientExitStatus) {
        self.message = message
        self.exitStatus = exitStatus
    }

    init(_ error: ConfigError) {
        self.init(error.description, exitStatus: Self.configurationExitStatus)
    }

    init(_ error: ListenTarget.Failure) {
        self.init(error.description, exitStatus: error.isMisconfiguration ? Self.configurationExitStatus : Self.transientExitStatus)
    }

    /// A configuration problem found while wiring (a master key file, a user name).
    static func configuration(_ message: String) -> StartupError {
        StartupError(message, exitStatus: configurationExitStatus)
    }

    var description: String { message }
}
