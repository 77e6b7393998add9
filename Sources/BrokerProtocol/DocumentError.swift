import SystemSupport

/// A STATUS or ADMIN document that cannot be read: not JSON, or a member missing or of the wrong type.
public struct DocumentError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Reads one document's members by name, each required and of one type; members it does not ask
/// for are ignored, so a newer broker may add some.
struct DocumentReader {
    let reader: JSONReader
    let node: JSONReader.Node
    let what: String

    /// Parses `json` and hands `read` a reader on its top-level object.
    static func read<T>(_ json: String, what: String, _ read: (DocumentReader) throws(DocumentError) -> T) throws(DocumentError) -> T {
        let bytes = Array(json.utf8)
        let result: Result<T, DocumentError> = bytes.withUnsafeBytes { raw in
            let reader: JSONReader
            do throws(JSONReader.Failure) { reader = try JSONReader(bytes: raw) } catch {
                return .failure(DocumentError("\(what) is not JSON: \(error.description)"))
            }
            guard case .object = reader.root else { return .failure(DocumentError("\(what) is not a JSON object")) }
            do throws(DocumentError) { return .success(try read(DocumentReader(reader: reader, node: reader.root, what: what))) } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private func missing(_ name: String, _ type: String) -> DocumentError {
        DocumentError("\(what) has no \(type) member \"\(name)\"")
    }

    func string(_ name: String) throws(DocumentError) -> String {
        guard let value = reader.string(reader.member(name, of: node)) else { throw missing(name, "string") }
        return value
    }

    /// A string or null.
    func optionalString(_ name: String) throws(DocumentError) -> String? {
        let member = reader.member(name, of: node)
        if reader.isNull(member) { return nil }
        guard let value = reader.string(member) else { throw missing(name, "string or null") }
        return value
    }

    func int(_ name: String) throws(DocumentError) -> Int {
        guard let value = reader.int(reader.member(name, of: node)) else { throw missing(name, "integer") }
        return value
    }

    func uint32(_ name: String) throws(DocumentError) -> UInt32 {
        guard let value = UInt32(exactly: try int(name)) else { throw DocumentError("\(what): \"\(name)\" is not a key id or version") }
        return value
    }

    func bool(_ name: String) throws(DocumentError) -> Bool {
        guard let value = reader.bool(reader.member(name, of: node)) else { throw missing(name, "boolean") }
        return value
    }

    func object(_ name: String) throws(DocumentError) -> DocumentReader {
        let member = reader.member(name, of: node)
        guard let member, reader.members(member) != nil else { throw missing(name, "object") }
        return DocumentReader(reader: reader, node: member, what: "\(what) \"\(name)\"")
    }

    /// Each member of an object member, by name.
    func objects(in name: String) throws(DocumentError) -> [(String, DocumentReader)] {
        let container = try object(name)
        var out: [(String, DocumentReader)] = []
        for (key, value) in reader.members(container.node) ?? [] {
            guard reader.members(value) != nil else { throw DocumentError("\(container.what) member \"\(key)\" is not an object") }
            out.append((key, DocumentReader(reader: reader, node: value, what: "\(container.what) \"\(key)\"")))
        }
        return out
    }

    /// Each element of an array member, every one an object.
    func array(_ name: String) throws(DocumentError) -> [DocumentReader] {
        guard let items = reader.array(reader.member(name, of: node)) else { throw missing(name, "array") }
        var out: [DocumentReader] = []
        for (index, item) in items.enumerated() {
            guard reader.members(item) != nil else { throw DocumentError("\(what) \"\(name)\"[\(index)] is not an object") }
            out.append(DocumentReader(reader: reader, node: item, what: "\(what) \"\(name)\"[\(index)]"))
        }
        return out
    }
}
