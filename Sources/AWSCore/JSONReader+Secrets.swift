import SecureMemory
import SystemSupport

/// Secret string values of a KMS or credential response, decoded straight into locked memory.
extension JSONReader {
    /// A string value decoded straight into locked memory.
    public func secret(_ node: Node?) -> SecureBytes? {
        guard case let .string(range)? = node, let length = Self.decodedLength(bytes, range) else { return nil }
        return SecureBytes(count: length) { Self.decode(bytes, range, into: $0) }
    }

    /// A base64 string value decoded into locked memory, without a plain copy in between.
    public func base64Secret(_ node: Node?) -> SecureBytes? {
        guard case let .string(range)? = node else { return nil }
        if !bytes[range].contains(UInt8(ascii: "\\")) {
            return Base64.decodeSecret(UnsafeRawBufferPointer(rebasing: bytes[range]))
        }
        guard let unescaped = secret(node) else { return nil }
        return unescaped.withUnsafeBytes { Base64.decodeSecret($0) }
    }

    /// Plain base64 string value (a ciphertext blob) as bytes.
    public func base64(_ node: Node?) -> [UInt8]? {
        guard let text = string(node) else { return nil }
        return Base64.decode(Array(text.utf8))
    }
}
