import BrokerProtocol
import Glibc
import KeyStore
import KMS
import Logging
import SecureMemory
import TestSupport
import XCTest

/// Wraps by XOR with a one-byte "master key" named in the blob's first byte, so rewrap has
/// something to change. `lie` makes rewrap return a blob of another key.
private struct XORProvider: KeyProvider, RewrappingProvider, UnlockableProvider {
    var master: UInt8 = 1
    var lie = false
    var name: String { "xor" }
    var fileNamePrefix: String { "xor-key" }

    func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes) {
        let key = (0..<length).map { UInt8(truncatingIfNeeded: Int(ref.keyID) &+ $0) }
        return ([master] + key.map { $0 ^ master }, SecureBytes(copying: key))
    }

    func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes {
        guard let master = wrapped.first else { throw ProviderError(.corrupt, "\(path) is empty") }
        return SecureBytes(copying: wrapped.dropFirst().map { $0 ^ master })
    }

    func rewrapDataKey(_ wrapped: [UInt8], to masterKey: String, for ref: KeyRef, path: String) async throws(ProviderError) -> [UInt8] {
        guard let new = UInt8(masterKey), let old = wrapped.first else { throw ProviderError(.refused, "no master key \(masterKey)") }
        return [new] + wrapped.dropFirst().map { $0 ^ old ^ new ^ (lie ? 0xFF : 0) }
    }

    var awaitsUnlock: Bool { false }

    func unlock(tokenCode: String) async throws(ProviderError) -> String {
        guard tokenCode == "123456" else { throw ProviderError(.refused, "wrong code") }
        return "unlocked"
    }
}

final class InstanceKeyStoreAdminTests: XCTestCase {
    private let temporary = TemporaryDirectory("keystore-admin")
    private var directory: String { temporary.path }

    private func makeStore(_ provider: any KeyProvider) async throws -> InstanceKeyStore {
        let store = InstanceKeyStore(name: "default", provider: provider, directory: "\(directory)/default", keyLength: 16, autoCreate: true,
                                     logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await store.open()
        return store
    }

    private func fileBytes(_ ref: KeyRef, prefix: String = "xor-key") throws -> [UInt8] {
        try KeyFileDirectory(path: "\(directory)/default", prefix: prefix).read(ref)
    }

    func testRewrapReplacesEveryVersionWithABlobThatHoldsTheSameKey() async throws {
        let store = try await makeStore(XORProvider())
        for id: UInt32 in 1...5 { _ = try await store.latest(keyID: id) }
        _ = try await store.rotate(keyID: 3)
        let report = await store.rewrap(to: "9", concurrency: 2)
        XCTAssertEqual(report.rewrapped, KeyRef.all(in: [1: [1], 2: [1], 3: [1, 2], 4: [1], 5: [1]]))
        XCTAssertTrue(report.failed.isEmpty)
        XCTAssertEqual(try fileBytes(KeyRef(keyID: 3, version: 2)).first, 9)
        let reopened = try await makeStore(XORProvider(master: 9))
        let key = try await reopened.key(KeyRef(keyID: 3, version: 2))
        XCTAssertEqual(key.withUnsafeBytes { Array($0) }, (0..<16).map { UInt8(3 + $0) })
    }

    func testARewrapThatChangesTheKeyKeepsTheOldFile() async throws {
        _ = try await makeStore(XORProvider()).latest(keyID: 1)
        let before = try fileBytes(KeyRef(keyID: 1, version: 1))
        let report = try await makeStore(XORProvider(lie: true)).rewrap(to: "9", concurrency: 4)
        XCTAssertEqual(report.failed.map(\.ref), [KeyRef(keyID: 1, version: 1)])
        XCTAssertTrue(report.failed[0].message.contains("decrypts to a different key; the old file is kept"), report.failed[0].message)
        XCTAssertEqual(try fileBytes(KeyRef(keyID: 1, version: 1)), before)
    }

    func testProvidersWithoutTheCapabilitySaySo() async throws {
        let local = try await makeStore(LocalProvider(masterKey: SecureBytes(copying: [UInt8](repeating: 7, count: 32)), instance: "default"))
        _ = try await local.latest(keyID: 1)
        let report = await local.rewrap(to: "alias/new", concurrency: 1)
        XCTAssertEqual(report.failed.map(\.message), ["provider \"local\" cannot re-wrap keys under another master key"])
        do {
            _ = try await local.unlock(tokenCode: "123456")
            XCTFail("the local provider unlocked")
        } catch {
            XCTAssertEqual(error.message, "provider \"local\" has no two-factor start; there is nothing to unlock")
        }
    }

    func testUnlockPassesTheProvidersAnswerAndErrors() async throws {
        let store = try await makeStore(XORProvider())
        let answer = try await store.unlock(tokenCode: "123456")
        XCTAssertEqual(answer, "unlocked")
        do {
            _ = try await store.unlock(tokenCode: "000000")
            XCTFail("a wrong code unlocked")
        } catch {
            XCTAssertEqual(error.code, .refused)
            XCTAssertEqual(error.message, "wrong code")
        }
    }
}
