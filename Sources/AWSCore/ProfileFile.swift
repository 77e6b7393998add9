import Glibc
import SecureMemory

/// The AWS shared `config` and `credentials` files (INI): `[default]`, `[profile NAME]` (config) or
/// `[NAME]` (credentials), `key = value` lines, `#`/`;` comments. The file's bytes are kept in locked
/// memory; `aws_secret_access_key` is handed out as SecureBytes and never becomes a String.
public struct ProfileFile: Sendable {
    public let path: String
    private let content: SecureBytes
    /// Profile name → setting name (lower case) → byte range of the value.
    private let profiles: [String: [String: Range<Int>]]

    public var profileNames: [String] { Array(profiles.keys) }

    public func hasProfile(_ name: String) -> Bool { profiles[name] != nil }

    public func value(_ key: String, profile: String) -> String? {
        guard let range = profiles[profile]?[key] else { return nil }
        return content.withUnsafeBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[range]), as: UTF8.self) }
    }

    public func secret(_ key: String, profile: String) -> SecureBytes? {
        guard let range = profiles[profile]?[key] else { return nil }
        return content.withUnsafeBytes { bytes in
            SecureBytes(count: range.count) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[range])) }
        }
    }

    /// Reads `path`; nil when the file does not exist.
    public static func load(path: String, isConfig: Bool) throws(AWSError) -> ProfileFile? {
        let content: SecureBytes
        do {
            guard let bytes = try SecretFile.read(path: path) else { return nil }
            content = bytes
        } catch {
            throw AWSError(.credentials, operation: "credentials", message: error.description)
        }
        return ProfileFile(path: path, content: content, profiles: parse(content, isConfig: isConfig))
    }

    private static func parse(_ content: SecureBytes, isConfig: Bool) -> [String: [String: Range<Int>]] {
        content.withUnsafeBytes { bytes in
            var profiles: [String: [String: Range<Int>]] = [:]
            var current: String?
            var lineStart = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
                defer { lineStart = lineEnd + 1 }
                let indented = lineStart < lineEnd && (bytes[lineStart] == 0x20 || bytes[lineStart] == 0x09)
                var range = trim(bytes, lineStart..<lineEnd)
                guard !range.isEmpty, bytes[range.lowerBound] != UInt8(ascii: "#"), bytes[range.lowerBound] != UInt8(ascii: ";") else { continue }
                if bytes[range.lowerBound] == UInt8(ascii: "[") {
                    guard let close = range.lastIndex(where: { bytes[$0] == UInt8(ascii: "]") }) else { current = nil; continue }
                    let name = text(bytes, trim(bytes, (range.lowerBound + 1)..<close))
                    let words = name.split(separator: " ", omittingEmptySubsequences: true)
                    if isConfig {
                        if words.count == 2, words[0] == "profile" { current = String(words[1]) }
                        else if words.count == 1, words[0] == "default" { current = "default" }
                        else { current = nil }  // [sso-session x], [services x]: not profiles
                    } else {
                        current = words.count == 1 ? String(words[0]) : nil
                    }
                    if let current, profiles[current] == nil { profiles[current] = [:] }
                    continue
                }
                // Indented lines continue a nested setting (e.g. s3 =\n  max_concurrent_requests = 20).
                guard !indented, let profile = current, let equals = range.firstIndex(where: { bytes[$0] == UInt8(ascii: "=") }) else { continue }
                let key = text(bytes, trim(bytes, range.lowerBound..<equals)).lowercased()
                range = trim(bytes, (equals + 1)..<range.upperBound)
                // An inline comment needs a blank before it: "key = value # note".
                if let hash = range.indices.first(where: { i in
                    (bytes[i] == UInt8(ascii: "#") || bytes[i] == UInt8(ascii: ";")) && i > range.lowerBound
                        && (bytes[i - 1] == 0x20 || bytes[i - 1] == 0x09)
                }) {
                    range = trim(bytes, range.lowerBound..<hash)
                }
                profiles[profile]?[key] = range
            }
            return profiles
        }
    }

    private static func trim(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound, upper = range.upperBound
        while lower < upper, [0x20, 0x09, 0x0D].contains(bytes[lower]) { lower += 1 }
        while upper > lower, [0x20, 0x09, 0x0D].contains(bytes[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    private static func text(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }
}

/// The profiles a chain can use: the credentials file's settings win over the config file's.
public struct ProfileSet: Sendable {
    public var files: [ProfileFile]

    public var isEmpty: Bool { files.isEmpty }

    public func hasProfile(_ name: String) -> Bool { files.contains { $0.hasProfile(name) } }

    public func value(_ key: String, profile: String) -> String? {
        for file in files { if let value = file.value(key, profile: profile) { return value } }
        return nil
    }

    public func secret(_ key: String, profile: String) -> SecureBytes? {
        for file in files { if let value = file.secret(key, profile: profile) { return value } }
        return nil
    }

    public var paths: String { files.map(\.path).joined(separator: " and ") }
}

extension SecretFile {
    /// A small non-secret text file (a token path's contents are treated the same way), trimmed.
    public static func readText(path: String) throws(Failure) -> String? {
        guard let bytes = try read(path: path) else { return nil }
        return bytes.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
            .trimmingCharacters(in: [" ", "\n", "\r", "\t"])
    }
}

extension String {
    public func trimmingCharacters(in set: Set<Character>) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
