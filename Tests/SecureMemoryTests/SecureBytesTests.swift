import Glibc
import SecureMemory
import XCTest

final class SecureBytesTests: XCTestCase {
    func testReleasedKeyIsZeroed() {
        var address: UnsafeRawPointer?
        do {
            let key = SecureBytes(copying: [UInt8](repeating: 0xA5, count: 32))
            key.withUnsafeBytes { address = $0.baseAddress }
            XCTAssertEqual(key.withUnsafeBytes { Array($0) }, [UInt8](repeating: 0xA5, count: 32))
        }
        // The pool keeps its pages mapped, so the released slot can still be read.
        guard let address else { return XCTFail("no address") }
        let after = Array(UnsafeRawBufferPointer(start: address, count: 32))
        XCTAssertEqual(after, [UInt8](repeating: 0, count: 32), "a released key must be zeroed")
    }

    func testAFailedInitialisationReleasesItsSlotOnce() {
        struct Refused: Error {}
        let before = LockedMemoryPool.shared.statistics.slotsInUse
        for _ in 0..<10 {
            XCTAssertThrowsError(try SecureBytes(count: 32) { (buffer: UnsafeMutableRawBufferPointer) throws(Refused) in
                buffer[0] = 0xEE
                throw Refused()
            })
        }
        XCTAssertEqual(LockedMemoryPool.shared.statistics.slotsInUse, before)
        // A slot freed twice would be handed to two keys at once.
        let keys = (0..<40).map { n in SecureBytes(copying: [UInt8](repeating: UInt8(n), count: 32)) }
        let addresses = Set(keys.map { key in key.withUnsafeBytes { Int(bitPattern: $0.baseAddress) } })
        XCTAssertEqual(addresses.count, keys.count, "two keys share one slot")
        for (n, key) in keys.enumerated() {
            XCTAssertTrue(key.withUnsafeBytes { $0.allSatisfy { $0 == UInt8(n) } })
        }
    }

    func testLargeSecretIsZeroedAndUnmapped() throws {
        let secret = SecureBytes(copying: [UInt8](repeating: 7, count: 5000))
        XCTAssertEqual(secret.count, 5000)
        XCTAssertEqual(secret.withUnsafeBytes { $0.allSatisfy { $0 == 7 } }, true)
    }

    func testKeysLiveInLockedPages() {
        let before = LockedMemoryPool.shared.statistics
        let keys = (0..<200).map { _ in SecureBytes(copying: [UInt8](repeating: 1, count: 32)) }
        let during = LockedMemoryPool.shared.statistics
        XCTAssertGreaterThanOrEqual(during.slotsInUse, before.slotsInUse + 200)
        XCTAssertGreaterThan(during.pages, 0)
        if getuid() == 0 {
            XCTAssertEqual(during.unlockedPages, 0, "as root, mlock must succeed (errno \(during.lastLockError))")
        }
        XCTAssertEqual(keys.count, 200)
    }

    func testFingerprintIsFirstEightBytesOfSHA256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        XCTAssertEqual(SecureBytes(copying: Array("abc".utf8)).fingerprint, "ba7816bf8f01cfea")
    }

    func testConstantTimeEquality() {
        let a = SecureBytes(copying: [1, 2, 3])
        XCTAssertTrue(a.isEqual(to: SecureBytes(copying: [1, 2, 3])))
        XCTAssertFalse(a.isEqual(to: SecureBytes(copying: [1, 2, 4])))
        XCTAssertFalse(a.isEqual(to: SecureBytes(copying: [1, 2])))
    }
}
