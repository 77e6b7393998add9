@testable import Broker
import BrokerPolicy
import BrokerProtocol
import Foundation
import Glibc
import KeyStore
import KMS
import Logging
import SecureMemory
import TestSupport
import XCTest

/// A provider with a status line, standing in for AWS KMS (whose module Broker must not need).
private struct NotingProvider: KeyProvider, StatusReportingProvider {
    let base: LocalProvider
    var name: String { "noting" }
    var fileNamePrefix: String { base.fileNamePrefix }
    var summary: String { "a test provider" }
    var statusNote: String? { "master key test: Enabled" }

    func generateDataKey(for ref: KeyRef, length: Int) async throws(ProviderError) -> (wrapped: [UInt8], key: SecureBytes) {
        try await base.generateDataKey(for: ref, length: length)
    }

    func unwrapDataKey(_ wrapped: [UInt8], for ref: KeyRef, path: String) async throws(ProviderError) -> SecureBytes {
        try await base.unwrapDataKey(wrapped, for: ref, path: path)
    }
}

final class StatusDocumentTests: XCTestCase {
    private let temporary = TemporaryDirectory("broker-test")
    private var directory: String { temporary.path }
    private let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    private func store(_ name: String, provider: (any KeyProvider)? = nil, keyFiles: Int = 0) async throws -> InstanceKeyStore {
        let local = LocalProvider(masterKey: SecureBytes(copying: [UInt8](repeating: 1, count: 32)), instance: name)
        let path = "\(directory)/\(name)"
        XCTAssertEqual(mkdir(path, 0o700), 0)
        // The index is built from file names alone; STATUS never unwraps.
        for id in 0..<keyFiles {
            let file = fopen("\(path)/local-key.\(id + 1).1", "w")
            fclose(file)
        }
        let store = InstanceKeyStore(name: name, provider: provider ?? local, directory: path, keyLength: 32, autoCreate: true, logger: logger)
        try await store.open()
        return store
    }

    private static let noAccess = AccessPolicy(rules: .init(admins: [], clients: [:]), admins: AccessList(), clients: [:])

    private func document(_ broker: BrokerContext, visible: [String], bound: String) throws -> [String: Any] {
        let json = broker.statusDocument(visibleInstances: visible, boundInstance: bound).json
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    func testStatusShowsOnlyTheVisibleInstancesAndTheProvidersNote() async throws {
        let plain = try await store("plain", keyFiles: 3)
        let noting = try await store("noting", provider: NotingProvider(base: LocalProvider(masterKey: SecureBytes(copying: [UInt8](repeating: 2, count: 32)), instance: "noting")))
        let broker = BrokerContext(instances: ["plain": plain, "noting": noting], access: Self.noAccess, limits: Limits(), logger: logger)

        let doc = try document(broker, visible: ["plain"], bound: "plain")
        XCTAssertEqual(doc["server"] as? String, BrokerContext.serverName)
        XCTAssertEqual(doc["protocol"] as? Int, 1)
        XCTAssertEqual(doc["instance"] as? String, "plain")
        let instances = try XCTUnwrap(doc["instances"] as? [String: Any])
        XCTAssertEqual(Array(instances.keys), ["plain"])
        let entry = try XCTUnwrap(instances["plain"] as? [String: Any])
        XCTAssertEqual(entry["provider"] as? String, "local")
        XCTAssertTrue(entry["provider_status"] is NSNull, "a provider without a status says nothing")
        XCTAssertEqual(entry["key_ids"] as? Int, 3)
        XCTAssertEqual((entry["keys"] as? [[String: Any]])?.compactMap { $0["id"] as? Int }, [1, 2, 3])
        XCTAssertEqual(entry["keys_truncated"] as? Bool, false)

        let all = try document(broker, visible: ["plain", "noting"], bound: "noting")
        let noted = try XCTUnwrap((all["instances"] as? [String: Any])?["noting"] as? [String: Any])
        XCTAssertEqual(noted["provider"] as? String, "noting")
        XCTAssertEqual(noted["provider_status"] as? String, "master key test: Enabled")

        // What the kernel would show as VmLck, computed from the same counts.
        let memory = try XCTUnwrap(doc["locked_memory"] as? [String: Any])
        let pool = LockedMemoryPool.shared.statistics
        let pages = try XCTUnwrap(memory["pages"] as? Int)
        let unlocked = try XCTUnwrap(memory["unlocked_pages"] as? Int)
        XCTAssertGreaterThan(pages, 0)
        XCTAssertEqual(memory["locked_kib"] as? Int, (pages - unlocked) * pool.pageSize / 1024)
        XCTAssertEqual(memory["lock_error"] is NSNull, pool.lastLockError == 0)
    }

    func testTheKeyListStopsAt500AndSaysSo() async throws {
        for (count, truncated) in [(500, false), (501, true)] {
            let name = "i\(count)"
            let broker = BrokerContext(instances: [name: try await store(name, keyFiles: count)], access: Self.noAccess,
                                       limits: Limits(), logger: logger)
            let entry = try XCTUnwrap((try document(broker, visible: [name], bound: name)["instances"] as? [String: Any])?[name] as? [String: Any])
            XCTAssertEqual(entry["key_ids"] as? Int, count)
            XCTAssertEqual((entry["keys"] as? [Any])?.count, 500)
            XCTAssertEqual(entry["keys_truncated"] as? Bool, truncated)
        }
    }
}
