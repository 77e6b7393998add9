import SystemSupport

/// The answer to STATUS, as the daemon writes it and keybrokerctl reads it (docs/protocol.md): the
/// daemon's counters and locked memory, and each instance the caller may see. On the wire it is
/// `json:string`; `json` and `init(json:)` are its only writer and reader. A reader ignores members
/// it does not know, so a member can be added without breaking an older keybrokerctl.
public struct StatusDocument: Sendable, Equatable {
    public struct LockedMemory: Sendable, Equatable {
        public var pages: Int
        /// Key slots in use.
        public var keys: Int
        public var unlockedPages: Int
        /// What the kernel shows as VmLck in /proc/PID/status.
        public var lockedKiB: Int
        /// Why mlock failed, when it did.
        public var lockError: String?

        public init(pages: Int, keys: Int, unlockedPages: Int, lockedKiB: Int, lockError: String?) {
            self.pages = pages
            self.keys = keys
            self.unlockedPages = unlockedPages
            self.lockedKiB = lockedKiB
            self.lockError = lockError
        }
    }

    /// Reloads of the configuration (SIGHUP, `systemctl reload`) and how the last one went.
    public struct Reload: Sendable, Equatable {
        public var succeeded: Int
        public var failed: Int
        /// When the last reload was tried (ISO 8601, UTC), nil before the first.
        public var lastAt: String?
        /// Why the last reload was refused; nil when it was applied.
        public var lastError: String?

        public init(succeeded: Int = 0, failed: Int = 0, lastAt: String? = nil, lastError: String? = nil) {
            self.succeeded = succeeded
            self.failed = failed
            self.lastAt = lastAt
            self.lastError = lastError
        }
    }

    public struct Instance: Sendable, Equatable {
        public var name: String
        public var provider: String
        /// The provider's own line (aws: the master key's state, or that the instance is locked).
        public var providerStatus: String?
        public var keyIDs: Int
        public var versions: Int
        public var loaded: Int
        public var pending: Int
        public var failed: Int
        public var lastError: String?
        /// The latest version of each listed key (at most `StatusDocument.maximumListedKeys`).
        public var keys: [KeyRef]
        public var keysTruncated: Bool
        /// Scheduled rotation: the period as configured ("90d"), and when the next key falls due
        /// (ISO 8601, UTC); nil without rotate_after (or, for the time, before the first check).
        public var rotateAfter: String?
        public var nextRotationDue: String?
        /// The identity of the instance's key set (nil from a broker older than key sets).
        public var keySet: String?

        public init(name: String, provider: String, providerStatus: String?, keyIDs: Int, versions: Int, loaded: Int, pending: Int,
                    failed: Int, lastError: String?, keys: [KeyRef], keysTruncated: Bool, rotateAfter: String? = nil,
                    nextRotationDue: String? = nil, keySet: String? = nil) {
            self.name = name
            self.provider = provider
            self.providerStatus = providerStatus
            self.keyIDs = keyIDs
            self.versions = versions
            self.loaded = loaded
            self.pending = pending
            self.failed = failed
            self.lastError = lastError
            self.keys = keys
            self.keysTruncated = keysTruncated
            self.rotateAfter = rotateAfter
            self.nextRotationDue = nextRotationDue
            self.keySet = keySet
        }
    }

    /// Keys listed per instance; `keysTruncated` says when there are more.
    public static let maximumListedKeys = 500

    public var server: String
    public var protocolVersion: Int
    public var uptimeSeconds: Int
    /// The instance the asking connection is bound to.
    public var instance: String
    public var connections: Int
    public var requests: Int
    public var errors: Int
    public var denied: Int
    public var malformed: Int
    public var timedOut: Int
    public var refusedConnections: Int
    /// New versions written by scheduled rotation (rotate_after) since start.
    public var scheduledRotations: Int
    public var lockedMemory: LockedMemory
    public var reload: Reload
    /// In name order.
    public var instances: [Instance]

    public init(server: String, protocolVersion: Int = Int(ProtocolConstants.version), uptimeSeconds: Int, instance: String,
                connections: Int, requests: Int, errors: Int, denied: Int, malformed: Int, timedOut: Int, refusedConnections: Int,
                scheduledRotations: Int = 0, lockedMemory: LockedMemory, reload: Reload = Reload(), instances: [Instance]) {
        self.server = server
        self.protocolVersion = protocolVersion
        self.uptimeSeconds = uptimeSeconds
        self.instance = instance
        self.connections = connections
        self.requests = requests
        self.errors = errors
        self.denied = denied
        self.malformed = malformed
        self.timedOut = timedOut
        self.refusedConnections = refusedConnections
        self.scheduledRotations = scheduledRotations
        self.lockedMemory = lockedMemory
        self.reload = reload
        self.instances = instances
    }

    public func instance(named name: String) -> Instance? {
        instances.first { $0.name == name }
    }
}

// MARK: JSON

extension StatusDocument {
    public var json: String {
        JSONValue.object([
            ("server", .string(server)),
            ("protocol", .int(protocolVersion)),
            ("uptime_s", .int(uptimeSeconds)),
            ("instance", .string(instance)),
            ("connections", .int(connections)),
            ("requests", .int(requests)),
            ("errors", .int(errors)),
            ("denied", .int(denied)),
            ("malformed", .int(malformed)),
            ("timed_out", .int(timedOut)),
            ("refused_connections", .int(refusedConnections)),
            ("scheduled_rotations", .int(scheduledRotations)),
            ("locked_memory", .object([
                ("pages", .int(lockedMemory.pages)),
                ("keys", .int(lockedMemory.keys)),
                ("unlocked_pages", .int(lockedMemory.unlockedPages)),
                ("locked_kib", .int(lockedMemory.lockedKiB)),
                ("lock_error", lockedMemory.lockError.map { .string($0) } ?? .null),
            ])),
            ("reload", .object([
                ("succeeded", .int(reload.succeeded)),
                ("failed", .int(reload.failed)),
                ("last_at", reload.lastAt.map { .string($0) } ?? .null),
                ("last_error", reload.lastError.map { .string($0) } ?? .null),
            ])),
            ("instances", .object(instances.map { ($0.name, $0.jsonValue) })),
        ]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the STATUS document") { document throws(DocumentError) in
            let memory = try document.object("locked_memory")
            let reload = try document.object("reload")
            var instances: [Instance] = []
            for (name, entry) in try document.objects(in: "instances") {
                instances.append(try Instance(name: name, reading: entry))
            }
            return StatusDocument(
                server: try document.string("server"), protocolVersion: try document.int("protocol"),
                uptimeSeconds: try document.int("uptime_s"), instance: try document.string("instance"),
                connections: try document.int("connections"), requests: try document.int("requests"),
                errors: try document.int("errors"), denied: try document.int("denied"), malformed: try document.int("malformed"),
                timedOut: try document.int("timed_out"), refusedConnections: try document.int("refused_connections"),
                scheduledRotations: try document.int("scheduled_rotations"),
                lockedMemory: LockedMemory(pages: try memory.int("pages"), keys: try memory.int("keys"),
                                           unlockedPages: try memory.int("unlocked_pages"), lockedKiB: try memory.int("locked_kib"),
                                           lockError: try memory.optionalString("lock_error")),
                reload: Reload(succeeded: try reload.int("succeeded"), failed: try reload.int("failed"),
                               lastAt: try reload.optionalString("last_at"), lastError: try reload.optionalString("last_error")),
                instances: instances)
        }
    }
}

extension StatusDocument.Instance {
    var jsonValue: JSONValue {
        .object([
            ("provider", .string(provider)),
            ("key_set", keySet.map { .string($0) } ?? .null),
            ("provider_status", providerStatus.map { .string($0) } ?? .null),
            ("key_ids", .int(keyIDs)),
            ("versions", .int(versions)),
            ("loaded", .int(loaded)),
            ("pending", .int(pending)),
            ("failed", .int(failed)),
            ("last_error", lastError.map { .string($0) } ?? .null),
            ("keys", .array(keys.map { .object([("id", .int(Int($0.keyID))), ("latest", .int(Int($0.version)))]) })),
            ("keys_truncated", .bool(keysTruncated)),
            ("rotate_after", rotateAfter.map { .string($0) } ?? .null),
            ("next_rotation_due", nextRotationDue.map { .string($0) } ?? .null),
        ])
    }

    init(name: String, reading entry: DocumentReader) throws(DocumentError) {
        var keys: [KeyRef] = []
        for key in try entry.array("keys") {
            keys.append(KeyRef(keyID: try key.uint32("id"), version: try key.uint32("latest")))
        }
        self.init(name: name, provider: try entry.string("provider"), providerStatus: try entry.optionalString("provider_status"),
                  keyIDs: try entry.int("key_ids"), versions: try entry.int("versions"), loaded: try entry.int("loaded"),
                  pending: try entry.int("pending"), failed: try entry.int("failed"), lastError: try entry.optionalString("last_error"),
                  keys: keys, keysTruncated: try entry.bool("keys_truncated"),
                  rotateAfter: try entry.optionalString("rotate_after"), nextRotationDue: try entry.optionalString("next_rotation_due"),
                  keySet: try entry.optionalString("key_set"))
    }
}
