import CKeybrokerCrypto

/// Zeroing of the byte strings that carried key material through the codec.
enum KMIPSecrets {
    /// Zeroes shared storage in place. The codec's trees own their arrays; zeroing through a
    /// copy would only zero the copy.
    static func zero(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        CKB_cleanse(UnsafeMutableRawPointer(mutating: base), bytes.count)
    }
}
