import BrokerProtocol
import CKeybrokerCrypto
import KeyStore
import SecureMemory

/// The built-in default: data keys from OpenSSL's CSPRNG, wrapped with AES-256-GCM under a master
/// key read from a local file or a systemd credential.
///
/// File format (`local-key.<id>.<version>`), all integers big-endian:
///
///     magic "KBLK" | format:u8 (=1) | key_len:u8 | nonce[12] | ciphertext[key_len] | tag[16]
///
/// The associated data binds the blob to its place, so a file copied to another id, version or
/// instance does not authenticate:
///
///     "keybroker-local-key-v1" 0x00 instance 0x00 key_id:u32 version:u32 header[6]
public struct LocalProvider: KeyProvider, KeyWrappingProvider {
    public let name = "local"
    public let fileNamePrefix = "local-key"

    static let magic: [UInt8] = Array("KBLK".utf8)
    static let formatVersion: UInt8 = 1
    static let headerLength = 6
    static let nonceLength = Int(CKB_GCM_IV_LENGTH)
    static let tagLength = Int(CKB_GCM_TAG_LENGTH)
    public static let masterKeyLength = 32

    private let masterKey: SecureBytes
    private let instance: String
    /// Where the master key was read from (a file, a systemd credential), for INFO.
    public let masterKeyName: String?

    public init(masterKey: SecureBytes, instance: String, masterKeyName: String? = nil) {
        precondition(masterKey.count == Self.masterKeyLength, "local master key must be 32 bytes")
        self.masterKey = masterKey
        self.instance = instance
        self.masterKeyName = masterKeyName
    }

    private func associatedData(ref: KeyRef, header: ArraySlice<UInt8>) -> [UInt8] {
        var aad = Array("keybroker-local-key-v1".utf8)
        aad.append(0)
        aad += Array(instance.utf8)
        aad.append(0)
        for value in [ref.keyID, ref.version] {
            aad += [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
        }
        aad += header
        return aad
    }

    public func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes) {
        guard (1...255).contains(length) else { throw ProviderError(.internal, "data key length \(length) is out of range") }
        let key: SecureBytes
        do { key = try Randomness.secret(length) } catch { throw ProviderError(.internal, error.description) }
        return (try await wrapDataKey(key, for: ref), key)
    }

    /// Seals a key the broker already holds (a key set moved here from another provider).
    public func wrapDataKey(_ key: SecureBytes, for ref: KeyRef) async throws(ProviderError) -> [UInt8] {
        let length = key.count
        guard (1...255).contains(length) else { throw ProviderError(.internal, "data key length \(length) is out of range") }
        let header = Self.magic + [Self.formatVersion, UInt8(length)]
        let nonce: [UInt8]
        do { nonce = try Randomness.bytes(Self.nonceLength) } catch { throw ProviderError(.internal, error.description) }
        let aad = associatedData(ref: ref, header: header[...])
        var ciphertext = [UInt8](repeating: 0, count: length)
        var tag = [UInt8](repeating: 0, count: Self.tagLength)
        let sealed = masterKey.withUnsafeBytes { master in
            key.withUnsafeBytes { plaintext in
                CKB_aes256gcm_seal(master.baseAddress?.assumingMemoryBound(to: UInt8.self), nonce, aad, aad.count,
                                   plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), length, &ciphertext, &tag)
            }
        }
        guard sealed == 1 else { throw ProviderError(.internal, "AES-256-GCM encryption failed in OpenSSL") }
        return header + nonce + ciphertext + tag
    }

    public func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes {
        let fixed = Self.headerLength + Self.nonceLength + Self.tagLength
        guard wrapped.count > fixed, Array(wrapped[0..<4]) == Self.magic else {
            throw ProviderError(.corrupt, "key file \(path) is corrupt: not a keybroker local key file")
        }
        guard wrapped[4] == Self.formatVersion else {
            throw ProviderError(.corrupt, "key file \(path) has format \(wrapped[4]); this keybrokerd reads format \(Self.formatVersion)")
        }
        let length = Int(wrapped[5])
        guard wrapped.count == fixed + length else {
            throw ProviderError(.corrupt, "key file \(path) is corrupt: \(wrapped.count) bytes where \(fixed + length) were expected")
        }
        let aad = associatedData(ref: ref, header: wrapped[0..<Self.headerLength])
        let nonce = Array(wrapped[Self.headerLength..<(Self.headerLength + Self.nonceLength)])
        let ciphertext = Array(wrapped[(Self.headerLength + Self.nonceLength)..<(fixed - Self.tagLength + length)])
        let tag = Array(wrapped[(wrapped.count - Self.tagLength)...])
        struct AuthenticationFailed: Error {}
        do {
            return try SecureBytes(count: length) { (plaintext: UnsafeMutableRawBufferPointer) throws(AuthenticationFailed) in
                let opened = masterKey.withUnsafeBytes { master in
                    CKB_aes256gcm_open(master.baseAddress?.assumingMemoryBound(to: UInt8.self), nonce, aad, aad.count,
                                       ciphertext, length, tag, plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self))
                }
                if opened != 1 { throw AuthenticationFailed() }
            }
        } catch {
            throw ProviderError(.corrupt, "key file \(path) is corrupt: it does not authenticate under the master key (tampered, moved from another key id, version or instance, or a different master key)")
        }
    }
}
