import BrokerProtocol
import KeyStore
import KMS
import SecureMemory
import XCTest

final class LocalProviderTests: XCTestCase {
    private let masterKey = SecureBytes(copying: [UInt8](repeating: 0x42, count: 32))
    private let ref = KeyRef(keyID: 7, version: 3)

    private func provider(instance: String = "default", master: SecureBytes? = nil) -> LocalProvider {
        LocalProvider(masterKey: master ?? masterKey, instance: instance)
    }

    private func bytes(_ key: SecureBytes) -> [UInt8] { key.withUnsafeBytes { Array($0) } }

    private func assertCorrupt(_ wrapped: [UInt8], for ref: KeyRef, with provider: LocalProvider, _ fragment: String,
                               file: StaticString = #filePath, line: UInt = #line) async {
        do {
            _ = try await provider.unwrapDataKey(wrapped, for: ref, path: "/keys/local-key.7.3")
            XCTFail("unwrapped a blob that must not unwrap", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, .corrupt, file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains("/keys/local-key.7.3"), error.message, file: file, line: line)
        }
    }

    func testGeneratedKeysUnwrapToTheSameBytesInTheDocumentedFormat() async throws {
        for length in [16, 32, 1, 255] {
            let (wrapped, key) = try await provider().generateDataKey(for: ref, length: length)
            XCTAssertEqual(key.count, length)
            XCTAssertEqual(Array(wrapped.prefix(6)), Array("KBLK".utf8) + [1, UInt8(length)])
            XCTAssertEqual(wrapped.count, 6 + 12 + length + 16)
            let unwrapped = try await provider().unwrapDataKey(wrapped, for: ref, path: "p")
            XCTAssertEqual(bytes(unwrapped), bytes(key))
        }
    }

    func testTwoKeysDifferAndLengthsOutsideOneByteAreRefused() async throws {
        let (_, a) = try await provider().generateDataKey(for: ref, length: 32)
        let (_, b) = try await provider().generateDataKey(for: ref, length: 32)
        XCTAssertNotEqual(bytes(a), bytes(b))
        for length in [0, 256] {
            do {
                _ = try await provider().generateDataKey(for: ref, length: length)
                XCTFail("length \(length) accepted")
            } catch {
                XCTAssertEqual(error.code, .internal)
            }
        }
    }

    func testABlobIsBoundToItsInstanceKeyVersionAndMasterKey() async throws {
        let (wrapped, _) = try await provider().generateDataKey(for: ref, length: 32)
        await assertCorrupt(wrapped, for: KeyRef(keyID: 7, version: 4), with: provider(), "does not authenticate")
        await assertCorrupt(wrapped, for: KeyRef(keyID: 8, version: 3), with: provider(), "does not authenticate")
        await assertCorrupt(wrapped, for: ref, with: provider(instance: "other"), "does not authenticate")
        let otherMaster = SecureBytes(copying: [UInt8](repeating: 0x43, count: 32))
        await assertCorrupt(wrapped, for: ref, with: provider(master: otherMaster), "does not authenticate")
        for index in [6, 20, wrapped.count - 1] {
            var tampered = wrapped
            tampered[index] ^= 0x01
            await assertCorrupt(tampered, for: ref, with: provider(), "does not authenticate")
        }
    }

    func testMalformedBlobsAreCorruptWithAReason() async throws {
        let (wrapped, _) = try await provider().generateDataKey(for: ref, length: 32)
        await assertCorrupt([], for: ref, with: provider(), "not a keybroker local key file")
        await assertCorrupt(Array("KBLX".utf8) + wrapped.dropFirst(4), for: ref, with: provider(), "not a keybroker local key file")
        var format = wrapped
        format[4] = 2
        await assertCorrupt(format, for: ref, with: provider(), "has format 2")
        await assertCorrupt(Array(wrapped.dropLast()), for: ref, with: provider(), "bytes where \(wrapped.count) were expected")
        await assertCorrupt(wrapped + [0], for: ref, with: provider(), "bytes where \(wrapped.count) were expected")
    }

    func testTheLocalProviderHasNoOptionalCapabilities() {
        let provider: any KeyProvider = provider()
        XCTAssertEqual(provider.name, "local")
        XCTAssertEqual(provider.fileNamePrefix, "local-key")
        XCTAssertTrue(provider.canCreateKeys)
        XCTAssertNil(provider as? any RewrappingProvider)
        XCTAssertNil(provider as? any UnlockableProvider)
        XCTAssertNil(provider as? any StatusReportingProvider)
        XCTAssertNil(provider as? any StartupCheckingProvider)
    }
}
