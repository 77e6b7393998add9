import BrokerPolicy
import Glibc
import KeyStore
import Logging
import NIOCore
import SecureMemory
import Synchronization
import SystemSupport

/// What every connection shares: the instances, who may use them, the limits and the counters.
public final class BrokerContext: Sendable {
    public static let serverName = "keybrokerd 0.1.0"

    /// Replaced whole by a reload (`reconfigure`); a connection keeps the store it was bound to
    /// until told of the change.
    public var instances: [String: InstanceKeyStore] { instanceTable.withLock { $0 } }
    let instanceTable: Mutex<[String: InstanceKeyStore]>
    public let access: AccessPolicy
    var limits: Limits { limitValues.withLock { $0 } }
    let limitValues: Mutex<Limits>
    let logger: Logger
    /// The last reload's outcome, for STATUS, `keybrokerctl status` and the metrics.
    public let reloads = ReloadRecord()
    let counters = BrokerCounters()
    let startedAt = ContinuousClock.now
    /// Open connections, so shutdown can close them and the connection limits can be enforced.
    let registry: ConnectionRegistry
    let peerLog: PeerEventLog
    public let memoryReport: LockedMemoryReport

    public init(instances: [String: InstanceKeyStore], access: AccessPolicy, limits: Limits, logger: Logger) {
        self.instanceTable = Mutex(instances)
        self.access = access
        self.limitValues = Mutex(limits)
        self.logger = logger
        self.registry = ConnectionRegistry(maximum: limits.maxConnections, maximumPerUID: limits.maxConnectionsPerUID,
                                           maximumUnauthenticated: limits.maxUnauthenticatedPerUID)
        self.peerLog = PeerEventLog(logger: logger, interval: .milliseconds(limits.peerLogIntervalMilliseconds))
        self.memoryReport = LockedMemoryReport(logger: logger)
    }

    /// Requests being answered right now, across all connections.
    public var requestsInFlight: Int { counters.inFlight.load(ordering: .relaxed) }
    public var requestsServed: Int { counters.requests.load(ordering: .relaxed) }

    /// Drops every unwrapped key (zeroed as released).
    public func releaseKeys() {
        for store in instances.values { store.releaseKeys() }
    }

    /// STATUS: the daemon and the instances the caller may see.
    func statusDocument(visibleInstances names: [String], boundInstance: String) -> String {
        let pool = LockedMemoryPool.shared.statistics
        let uptime = ContinuousClock.now - startedAt
        var instanceMembers: [(String, JSONValue)] = []
        for name in names.sorted() {
            guard let store = instances[name] else { continue }
            let summary = store.summary()
            let listed = summary.newest.prefix(500)
            instanceMembers.append((name, .object([
                ("provider", .string(store.provider.name)),
                ("provider_status", (store.provider as? any StatusReportingProvider)?.statusNote.map { .string($0) } ?? .null),
                ("key_ids", .int(summary.keyIDs)),
                ("versions", .int(summary.versions)),
                ("loaded", .int(summary.loaded)),
                ("pending", .int(summary.pending)),
                ("failed", .int(summary.failedLoads)),
                ("last_error", summary.lastError.map { .string($0) } ?? .null),
                ("keys", .array(listed.map { .object([("id", .int(Int($0.keyID))), ("latest", .int(Int($0.version)))]) })),
                ("keys_truncated", .bool(listed.count < summary.newest.count)),
            ])))
        }
        let document: JSONValue = .object([
            ("server", .string(Self.serverName)),
            ("protocol", .int(1)),
            ("uptime_s", .int(Int(uptime.components.seconds))),
            ("instance", .string(boundInstance)),
            ("connections", .int(counters.connections.load(ordering: .relaxed))),
            ("requests", .int(counters.requests.load(ordering: .relaxed))),
            ("errors", .int(counters.errors.load(ordering: .relaxed))),
            ("denied", .int(counters.denied.load(ordering: .relaxed))),
            ("malformed", .int(counters.malformed.load(ordering: .relaxed))),
            ("timed_out", .int(counters.timedOut.load(ordering: .relaxed))),
            ("refused_connections", .int(counters.rejectedConnections.load(ordering: .relaxed))),
            ("locked_memory", .object([
                ("pages", .int(pool.pages)),
                ("keys", .int(pool.slotsInUse)),
                ("unlocked_pages", .int(pool.unlockedPages)),
                // What the kernel shows as VmLck in /proc/PID/status.
                ("locked_kib", .int((pool.pages - pool.unlockedPages) * pool.pageSize / 1024)),
                ("lock_error", pool.lastLockError == 0 ? .null : .string(errnoText(pool.lastLockError))),
            ])),
            ("reload", reloads.document),
            ("instances", .object(instanceMembers)),
        ])
        return document.serialized
    }
}
