import BrokerPolicy
import BrokerProtocol
import Glibc
import KeyStore
import Logging
import NIOCore
import SecureMemory
import Synchronization
import SystemSupport

/// What every connection shares: the instances, who may use them, the limits and the counters.
public final class BrokerContext: Sendable {
    public static let serverName = "keybrokerd \(KeybrokerVersion.number)"

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
    func statusDocument(visibleInstances names: [String], boundInstance: String) -> StatusDocument {
        let pool = LockedMemoryPool.shared.statistics
        let uptime = ContinuousClock.now - startedAt
        let table = instances
        let visible = names.sorted().compactMap { name -> StatusDocument.Instance? in
            guard let store = table[name] else { return nil }
            let summary = store.summary()
            let listed = summary.newest.prefix(StatusDocument.maximumListedKeys)
            return StatusDocument.Instance(
                name: name, provider: store.provider.name,
                providerStatus: (store.provider as? any StatusReportingProvider)?.statusNote,
                keyIDs: summary.keyIDs, versions: summary.versions, loaded: summary.loaded, pending: summary.pending,
                failed: summary.failedLoads, lastError: summary.lastError, keys: listed.map { KeyRef(keyID: $0.keyID, version: $0.version) },
                keysTruncated: listed.count < summary.newest.count,
                rotateAfter: store.rotateAfterSeconds.map { RotationPeriod.text($0) },
                nextRotationDue: store.nextRotationDue.map { CivilTime(unix: ($0 + 999) / 1000).iso8601 },
                keySet: store.keySet?.value)
        }
        return StatusDocument(
            server: Self.serverName, uptimeSeconds: Int(uptime.components.seconds), instance: boundInstance,
            connections: counters.connections.load(ordering: .relaxed), requests: counters.requests.load(ordering: .relaxed),
            errors: counters.errors.load(ordering: .relaxed), denied: counters.denied.load(ordering: .relaxed),
            malformed: counters.malformed.load(ordering: .relaxed), timedOut: counters.timedOut.load(ordering: .relaxed),
            refusedConnections: counters.rejectedConnections.load(ordering: .relaxed),
            scheduledRotations: counters.scheduledRotations.load(ordering: .relaxed),
            lockedMemory: StatusDocument.LockedMemory(
                pages: pool.pages, keys: pool.slotsInUse, unlockedPages: pool.unlockedPages,
                // What the kernel shows as VmLck in /proc/PID/status.
                lockedKiB: (pool.pages - pool.unlockedPages) * pool.pageSize / 1024,
                lockError: pool.lastLockError == 0 ? nil : errnoText(pool.lastLockError)),
            reload: reloads.status,
            instances: visible)
    }
}
