import CKeybrokerCrypto

public enum Randomness {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String { "OpenSSL's random generator failed (RAND_bytes)" }
    }

    /// Fills `buffer` from OpenSSL's CSPRNG.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) throws(Failure) {
        guard buffer.count == 0 || CKB_random_bytes(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count) == 1 else {
            throw Failure()
        }
    }

    public static func bytes(_ count: Int) throws(Failure) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBytes { buffer in
            buffer.count == 0 || CKB_random_bytes(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count) == 1
        }
        guard ok else { throw Failure() }
        return bytes
    }

    /// A new random secret (a data key) of `count` bytes, made in locked memory.
    public static func secret(_ count: Int) throws(Failure) -> SecureBytes {
        try SecureBytes(count: count) { (buffer: UnsafeMutableRawBufferPointer) throws(Failure) in
            try fill(buffer)
        }
    }
}
