import BrokerProtocol
import CKeybrokerCrypto
import KeyStore
import KMIPProtocol
import ProviderSettings
import SecureMemory

/// The stored form of a data key wrapped by a KMIP server (`kmip-key.<id>.<version>`). All
/// integers big-endian; docs/kmip.md describes it for other tools.
///
///     magic "KBKM" | format:u8 (=1) | mode:u8 | key_len:u8 | kmip_major:u8 | kmip_minor:u8
///     uid_len:u16 | uid (the master key's Unique Identifier)
///     iv_len:u8 | iv | tag_len:u8 | tag | ct_len:u16 | ciphertext | check[16]
///
/// mode 1 = AES-GCM (tag present, additional data = `binding`), mode 2 = AES-CBC with PKCS#5
/// padding (no tag). `check` is the first 16 bytes of HMAC-SHA256(data key, binding || mode): it
/// proves the unwrapped key is the one that was wrapped for this id and version, whatever the mode
/// (an unauthenticated mode, or a server that drops the GCM tag).
///
///     binding = "keybroker-kmip-key-v1" 0x00 key_id:u32 version:u32
public struct KMIPKeyBlob: Sendable, Equatable {
    public enum Mode: UInt8, Sendable {
        case gcm = 1
        case cbcPKCS5 = 2

        public var name: String { self == .gcm ? "AES-GCM" : "AES-CBC-PKCS5" }

        var parameters: TTLV {
            switch self {
            case .gcm: Payloads.cryptographicParameters(mode: .gcm, padding: nil, tagLength: 16)
            case .cbcPKCS5: Payloads.cryptographicParameters(mode: .cbc, padding: .pkcs5, tagLength: nil)
            }
        }
    }

    static let magic: [UInt8] = Array("KBKM".utf8)
    static let formatVersion: UInt8 = 1
    static let checkLength = 16

    public var mode: Mode
    public var keyLength: Int
    public var version: ProtocolVersion
    public var masterKeyID: String
    public var iv: [UInt8]
    public var tag: [UInt8]
    public var ciphertext: [UInt8]
    public var check: [UInt8]

    public static func binding(_ ref: KeyRef) -> [UInt8] {
        var bytes = Array("keybroker-kmip-key-v1".utf8) + [0]
        for value in [ref.keyID, ref.version] {
            bytes += [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
        }
        return bytes
    }

    public static func check(for key: SecureBytes, ref: KeyRef, mode: Mode) -> [UInt8] {
        let message = binding(ref) + [mode.rawValue]
        var digest = [UInt8](repeating: 0, count: 32)
        key.withUnsafeBytes { bytes in
            _ = CKB_hmac_sha256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, message, message.count, &digest)
        }
        return Array(digest.prefix(checkLength))
    }

    public var encoded: [UInt8] {
        let uid = Array(masterKeyID.utf8)
        var out = Self.magic + [Self.formatVersion, mode.rawValue, UInt8(keyLength), UInt8(version.major), UInt8(version.minor)]
        out += [UInt8(uid.count >> 8), UInt8(uid.count & 0xFF)] + uid
        out += [UInt8(iv.count)] + iv + [UInt8(tag.count)] + tag
        out += [UInt8(ciphertext.count >> 8), UInt8(ciphertext.count & 0xFF)] + ciphertext + check
        return out
    }

    public struct Malformed: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public init(mode: Mode, keyLength: Int, version: ProtocolVersion, masterKeyID: String, iv: [UInt8], tag: [UInt8],
                ciphertext: [UInt8], check: [UInt8]) {
        self.mode = mode
        self.keyLength = keyLength
        self.version = version
        self.masterKeyID = masterKeyID
        self.iv = iv
        self.tag = tag
        self.ciphertext = ciphertext
        self.check = check
    }

    public init(decoding bytes: [UInt8]) throws(Malformed) {
        var offset = 0
        func take(_ count: Int) throws(Malformed) -> ArraySlice<UInt8> {
            guard count >= 0, bytes.count - offset >= count else {
                throw Malformed(description: "it ends after \(bytes.count) bytes, inside its header")
            }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }
        guard bytes.count >= 9, Array(try take(4)) == Self.magic else {
            throw Malformed(description: "not a keybroker KMIP key file")
        }
        let header = Array(try take(5))
        guard header[0] == Self.formatVersion else {
            throw Malformed(description: "it has format \(header[0]); this keybrokerd reads format \(Self.formatVersion)")
        }
        guard let mode = Mode(rawValue: header[1]) else { throw Malformed(description: "unknown wrapping mode \(header[1])") }
        guard [16, 24, 32].contains(Int(header[2])) else { throw Malformed(description: "key length \(header[2]) is not an AES key length") }
        let uidLength = try take(2).reduce(0) { $0 << 8 | Int($1) }
        guard uidLength > 0, let uid = String(validating: Array(try take(uidLength)), as: UTF8.self) else {
            throw Malformed(description: "the master key identifier is empty or not UTF-8")
        }
        let iv = Array(try take(Int(try take(1).first!)))
        let tag = Array(try take(Int(try take(1).first!)))
        let ciphertextLength = try take(2).reduce(0) { $0 << 8 | Int($1) }
        let ciphertext = Array(try take(ciphertextLength))
        let check = Array(try take(Self.checkLength))
        guard offset == bytes.count else { throw Malformed(description: "\(bytes.count - offset) bytes follow its end") }
        guard !ciphertext.isEmpty else { throw Malformed(description: "the ciphertext is empty") }
        guard mode != .gcm || !tag.isEmpty else { throw Malformed(description: "an AES-GCM key without its tag") }
        self.init(mode: mode, keyLength: Int(header[2]), version: ProtocolVersion(Int32(header[3]), Int32(header[4])),
                  masterKeyID: uid, iv: iv, tag: tag, ciphertext: ciphertext, check: check)
    }
}
