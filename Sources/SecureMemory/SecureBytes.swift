import CKeybrokerCrypto
import SystemSupport

/// Secret bytes (a data key, a master key) in locked memory, zeroed when the last reference goes.
/// Immutable after creation, hence safe to share between threads.
public final class SecureBytes: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutableRawPointer
    public let count: Int
    /// Size of a dedicated allocation, or nil for a pool slot.
    private let dedicatedSize: Int?

    /// Allocates `count` zeroed bytes of locked memory.
    private init(count: Int) {
        precondition(count >= 0, "negative secret length")
        let pool = LockedMemoryPool.shared
        if count <= LockedMemoryPool.slotSize, let slot = pool.allocateSlot() {
            (pointer, dedicatedSize) = (slot, nil)
        } else if let (pages, size) = pool.allocateLarge(byteCount: max(count, 1)) {
            (pointer, dedicatedSize) = (pages, size)
        } else {
            // Out of memory for a few bytes: nothing sensible is left to do.
            fatalError("cannot allocate \(count) bytes of locked memory")
        }
        self.count = count
    }

    /// Allocates `count` bytes and lets `initializer` fill them. If it throws, the bytes are zeroed
    /// and, the object being fully initialised, released once by `deinit`. (Releasing here too
    /// would put the slot on the free list twice and hand it to two keys.)
    public convenience init<E: Error>(count: Int, initializer: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        self.init(count: count)
        do {
            try initializer(UnsafeMutableRawBufferPointer(start: pointer, count: count))
        } catch {
            CKB_cleanse(pointer, count)
            throw error
        }
    }

    /// Copies `bytes`; the caller zeroes its own copy.
    public convenience init(copying bytes: some Collection<UInt8>) {
        self.init(count: bytes.count) { (buffer: UnsafeMutableRawBufferPointer) in
            buffer.copyBytes(from: bytes)
        }
    }

    private func release() {
        if let size = dedicatedSize {
            LockedMemoryPool.shared.releaseLarge(pointer, size: size)
        } else {
            LockedMemoryPool.shared.releaseSlot(pointer)
        }
    }

    deinit {
        release()
    }

    /// Inlinable so the request path gets it specialised, without a generic-metadata lookup per answer.
    @inlinable
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// The bytes, valid only while this object is alive: for a holder that keeps a reference
    /// elsewhere and must not count one more per use (the key store's cached path).
    public var unsafeBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pointer, count: count)
    }

    /// First 8 bytes of SHA-256, in hex: lets an admin compare keys without revealing them.
    public var fingerprint: String {
        var digest = [UInt8](repeating: 0, count: 32)
        withUnsafeBytes { bytes in
            CKB_sha256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &digest)
        }
        return Hex.encode(digest.prefix(8))
    }

    /// Constant-time comparison.
    public func isEqual(to other: SecureBytes) -> Bool {
        guard count == other.count else { return false }
        return withUnsafeBytes { a in
            other.withUnsafeBytes { b in
                var difference: UInt8 = 0
                for index in 0..<count { difference |= a[index] ^ b[index] }
                return difference == 0
            }
        }
    }
}

extension Array where Element == UInt8 {
    /// Zeroes a temporary copy of secret bytes before it is dropped.
    public mutating func cleanse() {
        withUnsafeMutableBytes { CKB_cleanse($0.baseAddress, $0.count) }
    }
}

extension UnsafeRawBufferPointer {
    /// Zeroes bytes that held a secret in a buffer the caller owns (a frame sent or received),
    /// in a way the compiler does not remove.
    public func cleanse() {
        CKB_cleanse(UnsafeMutableRawPointer(mutating: baseAddress), count)
    }
}
