import SystemSupport

/// The answers to `store status|push|verify` (docs/protocol.md). Lists of versions carry at most
/// `listLimit` entries; the counts beside them are always whole.
public enum StoreAnswerLimits {
    public static let listLimit = 100

    static func refs(_ refs: [KeyRef]) -> JSONValue {
        .array(refs.prefix(listLimit).map { .object([("id", .int(Int($0.keyID))), ("version", .int(Int($0.version)))]) })
    }

    static func readRefs(_ name: String, of document: DocumentReader) throws(DocumentError) -> [KeyRef] {
        var out: [KeyRef] = []
        for entry in try document.array(name) {
            out.append(KeyRef(keyID: try entry.uint32("id"), version: try entry.uint32("version")))
        }
        return out
    }
}

/// `store status`: `{"instance", "store", "objects", "key_ids", "versions_served", "local_only",
/// "local_only_versions": [{"id", "version"}], "not_cached", "last_sync" (ISO 8601 or null),
/// "last_error" (or null), "refresh_ms"}`.
public struct StoreStatusAnswer: AdminAnswer {
    public var instance: String
    public var store: String
    public var objects: Int
    public var keyIDs: Int
    public var versionsServed: Int
    public var localOnly: Int
    public var localOnlyVersions: [KeyRef]
    public var notCached: Int
    public var lastSync: String?
    public var lastError: String?
    public var refreshMilliseconds: Int

    public init(instance: String, store: String, objects: Int, keyIDs: Int, versionsServed: Int, localOnly: [KeyRef], notCached: Int,
                lastSync: String?, lastError: String?, refreshMilliseconds: Int) {
        self.instance = instance
        self.store = store
        self.objects = objects
        self.keyIDs = keyIDs
        self.versionsServed = versionsServed
        self.localOnly = localOnly.count
        self.localOnlyVersions = Array(localOnly.prefix(StoreAnswerLimits.listLimit))
        self.notCached = notCached
        self.lastSync = lastSync
        self.lastError = lastError
        self.refreshMilliseconds = refreshMilliseconds
    }

    public var json: String {
        JSONValue.object([
            ("instance", .string(instance)), ("store", .string(store)), ("objects", .int(objects)), ("key_ids", .int(keyIDs)),
            ("versions_served", .int(versionsServed)), ("local_only", .int(localOnly)),
            ("local_only_versions", StoreAnswerLimits.refs(localOnlyVersions)), ("not_cached", .int(notCached)),
            ("last_sync", lastSync.map { .string($0) } ?? .null), ("last_error", lastError.map { .string($0) } ?? .null),
            ("refresh_ms", .int(refreshMilliseconds)),
        ]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to store status") { d throws(DocumentError) in
            var answer = StoreStatusAnswer(instance: try d.string("instance"), store: try d.string("store"), objects: try d.int("objects"),
                                           keyIDs: try d.int("key_ids"), versionsServed: try d.int("versions_served"),
                                           localOnly: try StoreAnswerLimits.readRefs("local_only_versions", of: d),
                                           notCached: try d.int("not_cached"), lastSync: try d.optionalString("last_sync"),
                                           lastError: try d.optionalString("last_error"), refreshMilliseconds: try d.int("refresh_ms"))
            answer.localOnly = try d.int("local_only")
            return answer
        }
    }
}

/// `store push`: `{"instance", "uploaded", "present", "failed_count", "failed": [{"id", "version", "error"}]}`.
public struct StorePushAnswer: AdminAnswer {
    public var instance: String
    public var uploaded: Int
    /// Versions the store had already, with the same bytes.
    public var present: Int
    public var failedCount: Int
    public var failed: [KeyVersionFailure]

    public init(instance: String, uploaded: Int, present: Int, failed: [KeyVersionFailure]) {
        self.instance = instance
        self.uploaded = uploaded
        self.present = present
        self.failedCount = failed.count
        self.failed = Array(failed.prefix(StoreAnswerLimits.listLimit))
    }

    public var json: String {
        JSONValue.object([
            ("instance", .string(instance)), ("uploaded", .int(uploaded)), ("present", .int(present)),
            ("failed_count", .int(failedCount)), ("failed", KeyVersionFailure.jsonArray(failed)),
        ]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to store push") { d throws(DocumentError) in
            var answer = StorePushAnswer(instance: try d.string("instance"), uploaded: try d.int("uploaded"), present: try d.int("present"),
                                         failed: try KeyVersionFailure.read("failed", of: d))
            answer.failedCount = try d.int("failed_count")
            return answer
        }
    }
}

/// `store verify`: `{"instance", "checked", "verified", "local_only", "local_only_versions", "failed_count", "failed"}`.
public struct StoreVerifyAnswer: AdminAnswer {
    public var instance: String
    public var checked: Int
    public var verified: Int
    public var localOnly: Int
    public var localOnlyVersions: [KeyRef]
    public var failedCount: Int
    public var failed: [KeyVersionFailure]

    public init(instance: String, checked: Int, verified: Int, localOnly: [KeyRef], failed: [KeyVersionFailure]) {
        self.instance = instance
        self.checked = checked
        self.verified = verified
        self.localOnly = localOnly.count
        self.localOnlyVersions = Array(localOnly.prefix(StoreAnswerLimits.listLimit))
        self.failedCount = failed.count
        self.failed = Array(failed.prefix(StoreAnswerLimits.listLimit))
    }

    public var json: String {
        JSONValue.object([
            ("instance", .string(instance)), ("checked", .int(checked)), ("verified", .int(verified)), ("local_only", .int(localOnly)),
            ("local_only_versions", StoreAnswerLimits.refs(localOnlyVersions)), ("failed_count", .int(failedCount)),
            ("failed", KeyVersionFailure.jsonArray(failed)),
        ]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to store verify") { d throws(DocumentError) in
            var answer = StoreVerifyAnswer(instance: try d.string("instance"), checked: try d.int("checked"), verified: try d.int("verified"),
                                           localOnly: try StoreAnswerLimits.readRefs("local_only_versions", of: d),
                                           failed: try KeyVersionFailure.read("failed", of: d))
            answer.localOnly = try d.int("local_only")
            answer.failedCount = try d.int("failed_count")
            return answer
        }
    }
}
