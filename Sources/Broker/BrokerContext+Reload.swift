import BrokerProtocol
import BrokerPolicy
import KeyStore
import Logging
import Synchronization
import SystemSupport

/// A reload (SIGHUP): the daemon's wiring checks the new configuration and builds the stores of
/// new and changed instances; this swaps them in at once. Open connections are told through their
/// pipelines (`AccessPolicy.Changed`): one bound to a changed instance moves to the new store
/// between two requests, one bound to a removed instance is closed once its answers are written.
/// Requests in flight finish on the store they started on.
extension BrokerContext {
    /// Returns the stores that are no longer served (removed or replaced); the caller zeroes
    /// their keys.
    public func reconfigure(instances new: [String: InstanceKeyStore], rules: AccessPolicy.Rules, admins: AccessList,
                            clients: [String: AccessList], limits: Limits) -> (retired: [InstanceKeyStore], accessChange: AccessPolicy.Change?) {
        let old = instanceTable.withLock { table in
            defer { table = new }
            return table
        }
        limitValues.withLock { $0 = limits }
        registry.setMaximums(total: limits.maxConnections, perUID: limits.maxConnectionsPerUID,
                             unauthenticated: limits.maxUnauthenticatedPerUID)
        let change = access.replace(rules: rules, admins: admins, clients: clients)
        let retired = old.compactMap { name, store in new[name] === store ? nil : store }
        for channel in registry.channels {
            channel.pipeline.fireUserInboundEventTriggered(AccessPolicy.Changed())
        }
        return (retired, change)
    }
}

/// How many reloads succeeded and failed, and the last one's outcome.
public final class ReloadRecord: Sendable {
    private struct State {
        var succeeded = 0
        var failed = 0
        var lastAt: Int64?
        var lastError: String?
    }
    private let state = Mutex(State())

    public func succeeded() {
        state.withLock {
            $0.succeeded += 1
            $0.lastAt = unixNow()
            $0.lastError = nil
        }
    }

    public func failed(_ error: String) {
        state.withLock {
            $0.failed += 1
            $0.lastAt = unixNow()
            $0.lastError = error
        }
    }

    public var counts: (succeeded: Int, failed: Int) { state.withLock { ($0.succeeded, $0.failed) } }

    /// nil when the last reload succeeded (or none was made).
    public var lastError: String? { state.withLock { $0.lastError } }

    var status: StatusDocument.Reload {
        state.withLock { state in
            StatusDocument.Reload(succeeded: state.succeeded, failed: state.failed,
                                  lastAt: state.lastAt.map { CivilTime(unix: $0).iso8601 }, lastError: state.lastError)
        }
    }
}
