import SystemSupport

/// The OK answer to one `AdminCommand`: on the wire `json:string`, written and read only here.
public protocol AdminAnswer: Sendable, Equatable {
    var json: String { get }
    init(json: String) throws(DocumentError)
}

/// A key version an admin command could not handle, and why.
public struct KeyVersionFailure: Sendable, Equatable {
    public var ref: KeyRef
    public var message: String

    public init(ref: KeyRef, message: String) {
        self.ref = ref
        self.message = message
    }

    static func jsonArray(_ failures: [KeyVersionFailure]) -> JSONValue {
        .array(failures.map { .object([("id", .int(Int($0.ref.keyID))), ("version", .int(Int($0.ref.version))), ("error", .string($0.message))]) })
    }

    static func read(_ name: String, of document: DocumentReader) throws(DocumentError) -> [KeyVersionFailure] {
        var out: [KeyVersionFailure] = []
        for entry in try document.array(name) {
            out.append(KeyVersionFailure(ref: KeyRef(keyID: try entry.uint32("id"), version: try entry.uint32("version")),
                                         message: try entry.string("error")))
        }
        return out
    }
}

/// `rewrap MASTER_KEY`: `{"instance", "master_key", "rewrapped": n, "failed": [{"id", "version", "error"}]}`.
public struct RewrapAnswer: AdminAnswer {
    public var instance: String
    public var masterKey: String
    public var rewrapped: Int
    public var failed: [KeyVersionFailure]

    public init(instance: String, masterKey: String, rewrapped: Int, failed: [KeyVersionFailure]) {
        self.instance = instance
        self.masterKey = masterKey
        self.rewrapped = rewrapped
        self.failed = failed
    }

    public var json: String {
        JSONValue.object([
            ("instance", .string(instance)), ("master_key", .string(masterKey)), ("rewrapped", .int(rewrapped)),
            ("failed", KeyVersionFailure.jsonArray(failed)),
        ]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to rewrap") { document throws(DocumentError) in
            RewrapAnswer(instance: try document.string("instance"), masterKey: try document.string("master_key"),
                         rewrapped: try document.int("rewrapped"), failed: try KeyVersionFailure.read("failed", of: document))
        }
    }
}

/// `rewrap-into INSTANCE`: `{"instance", "into", "provider", "copied": n, "present": n, "failed": [...]}`.
public struct RewrapIntoAnswer: AdminAnswer {
    public var instance: String
    public var into: String
    /// The target instance's provider.
    public var provider: String
    public var copied: Int
    /// Versions the target had already, with the same bytes.
    public var present: Int
    public var failed: [KeyVersionFailure]

    public init(instance: String, into: String, provider: String, copied: Int, present: Int, failed: [KeyVersionFailure]) {
        self.instance = instance
        self.into = into
        self.provider = provider
        self.copied = copied
        self.present = present
        self.failed = failed
    }

    public var json: String {
        JSONValue.object([
            ("instance", .string(instance)), ("into", .string(into)), ("provider", .string(provider)),
            ("copied", .int(copied)), ("present", .int(present)), ("failed", KeyVersionFailure.jsonArray(failed)),
        ]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to rewrap-into") { document throws(DocumentError) in
            RewrapIntoAnswer(instance: try document.string("instance"), into: try document.string("into"),
                             provider: try document.string("provider"), copied: try document.int("copied"),
                             present: try document.int("present"), failed: try KeyVersionFailure.read("failed", of: document))
        }
    }
}

/// `unlock TOKEN_CODE`: `{"instance", "unlocked": true, "message"}`.
public struct UnlockAnswer: AdminAnswer {
    public var instance: String
    public var message: String

    public init(instance: String, message: String) {
        self.instance = instance
        self.message = message
    }

    public var json: String {
        JSONValue.object([("instance", .string(instance)), ("unlocked", .bool(true)), ("message", .string(message))]).serialized
    }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to unlock") { document throws(DocumentError) in
            guard try document.bool("unlocked") else { throw DocumentError("the answer to unlock says the instance is still locked") }
            return UnlockAnswer(instance: try document.string("instance"), message: try document.string("message"))
        }
    }
}

/// `metrics prometheus`: `{"text": "..."}`, the Prometheus text exposition.
public struct MetricsAnswer: AdminAnswer {
    public var text: String

    public init(text: String) {
        self.text = text
    }

    public var json: String { JSONValue.object([("text", .string(text))]).serialized }

    public init(json: String) throws(DocumentError) {
        self = try DocumentReader.read(json, what: "the answer to metrics") { document throws(DocumentError) in
            MetricsAnswer(text: try document.string("text"))
        }
    }
}
