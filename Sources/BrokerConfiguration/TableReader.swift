import BrokerPolicy
import TOMLKit

/// Reads typed values from a TOML table, remembering which keys were read so that anything left
/// over (a typo, an option of another provider) is reported instead of silently ignored.
struct TableReader {
    let table: TOMLTable
    let file: String
    /// Dotted prefix for messages, e.g. "instances.default.".
    let path: String
    private var consumed: Set<String> = []
    var consumedAll = false

    init(table: TOMLTable, file: String, path: String) {
        self.table = table
        self.file = file
        self.path = path
    }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, key: path + key, message)
    }

    private mutating func value(_ key: String) -> (any TOMLValueConvertible)? {
        consumed.insert(key)
        return table[key]
    }

    private func typeError(_ key: String, expected: String, found: any TOMLValueConvertible) -> ConfigError {
        error(key, "must be \(expected), not \(found.type)")
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value.string else { throw typeError(key, expected: "a string", found: value) }
        return string
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard let bool = value.bool else { throw typeError(key, expected: "true or false", found: value) }
        return bool
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let value = value(key) else { return nil }
        guard let int = value.int else { throw typeError(key, expected: "an integer", found: value) }
        guard range.contains(int) else { throw error(key, "must be between \(range.lowerBound) and \(range.upperBound), not \(int)") }
        return int
    }

    mutating func table(_ key: String) throws(ConfigError) -> TOMLTable? {
        guard let value = value(key) else { return nil }
        guard let table = value.table else { throw typeError(key, expected: "a table", found: value) }
        return table
    }

    /// A list of user names, "@group" names and uids (strings or integers).
    mutating func principals(_ key: String) throws(ConfigError) -> [Principal]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else { throw typeError(key, expected: "a list of user names, \"@group\" names or uids", found: value) }
        var principals: [Principal] = []
        for element in array {
            if let int = element.int {
                guard let uid = UInt32(exactly: int) else { throw error(key, "\(int) is not a valid uid") }
                principals.append(.uid(uid))
            } else if let text = element.string {
                guard let principal = Principal(parsing: text) else { throw error(key, "\"\(text)\" is not a user name, \"@group\" or uid") }
                principals.append(principal)
            } else {
                throw error(key, "entries must be strings or integers, not \(element.type)")
            }
        }
        return principals
    }

    func rejectUnknownKeys() throws(ConfigError) {
        guard !consumedAll else { return }
        for key in table.keys where !consumed.contains(key) {
            throw error(key, "unknown setting")
        }
    }
}
