import BrokerProtocol

/// The two key file formats of the aws provider.
///
/// - **Raw** (the default, and every file aws_key_management writes): the KMS CiphertextBlob,
///   byte for byte. Decrypted without an encryption context.
/// - **With encryption context** (`encryption_context = true`): one header line, then the blob:
///   ```
///   keybroker-kms-context-1 instance=default key_id=3 version=1\n<CiphertextBlob>
///   ```
///   The blob was made with the KMS EncryptionContext `keybroker:instance`, `keybroker:key_id`,
///   `keybroker:version`, and is decrypted with the context built from the instance and the
///   file's *name*, never from the header: a file renamed to another key id does not decrypt.
///   The header only says that a context is needed and what it was, for the error line.
///
/// A real KMS CiphertextBlob starts with a version byte (0x01) and moto's with an ASCII key id
/// (hex digits and "-"); neither can start with "k", so the two formats never mix up.
enum AWSKeyBlob {
    static let magic = Array("keybroker-kms-context-1 ".utf8)
    /// The header line is short; a longer one is a damaged file.
    static let maximumHeaderLength = 512

    struct Context: Equatable {
        var instance: String
        var ref: KeyRef

        var kmsPairs: [(String, String)] {
            [("keybroker:instance", instance), ("keybroker:key_id", String(ref.keyID)), ("keybroker:version", String(ref.version))]
        }

        var description: String { "instance \"\(instance)\" key \(ref.keyID) version \(ref.version)" }
    }

    enum Parsed {
        case raw([UInt8])
        case withContext(recorded: Context, blob: [UInt8])
    }

    struct Unreadable: Error {
        var message: String
    }

    static func encode(_ blob: [UInt8], context: Context) -> [UInt8] {
        magic + Array("instance=\(context.instance) key_id=\(context.ref.keyID) version=\(context.ref.version)\n".utf8) + blob
    }

    static func parse(_ bytes: [UInt8]) throws(Unreadable) -> Parsed {
        guard bytes.starts(with: magic) else { return .raw(bytes) }
        let limit = min(bytes.count, maximumHeaderLength)
        guard let newline = bytes[magic.count..<limit].firstIndex(of: 0x0A) else {
            throw Unreadable(message: "its keybroker header line has no end")
        }
        let fields = String(decoding: bytes[magic.count..<newline], as: UTF8.self).split(separator: " ")
        var values: [String: String] = [:]
        for field in fields {
            guard let equals = field.firstIndex(of: "=") else { throw Unreadable(message: "its keybroker header has a field without \"=\"") }
            values[String(field[..<equals])] = String(field[field.index(after: equals)...])
        }
        guard let instance = values["instance"], let keyID = values["key_id"].flatMap({ UInt32($0) }),
              let version = values["version"].flatMap({ UInt32($0) })
        else { throw Unreadable(message: "its keybroker header lacks instance, key_id or version") }
        let blob = Array(bytes[(newline + 1)...])
        guard !blob.isEmpty else { throw Unreadable(message: "it has a keybroker header but no CiphertextBlob") }
        return .withContext(recorded: Context(instance: instance, ref: KeyRef(keyID: keyID, version: version)), blob: blob)
    }
}
