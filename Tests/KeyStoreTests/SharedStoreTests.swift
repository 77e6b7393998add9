import BrokerProtocol
import KMS
import KeyStore
import Logging
import SecureMemory
import TestSupport
import XCTest

/// The key store's rules for a store many brokers share: the store acknowledges before a client
/// hears of a version, a lost create race adopts the winner, an outage serves the cache and
/// refuses creation, other brokers' versions are found, and push/verify.
final class SharedStoreTests: XCTestCase {
    private let temporary = TemporaryDirectory("keystore-shared")
    private let masterKey = SecureBytes(copying: [UInt8](repeating: 0x17, count: 32))
    private let bucket = FakeBucket()

    private func broker(_ host: String) async throws -> InstanceKeyStore {
        let provider = LocalProvider(masterKey: masterKey, instance: "default")
        let files = FakeSharedStore(bucket: bucket, cache: KeyFileDirectory(path: "\(temporary.path)/\(host)", prefix: provider.fileNamePrefix))
        let store = InstanceKeyStore(name: "default", provider: provider, files: files, keyLength: 32, autoCreate: true,
                                     logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await store.open()
        return store
    }

    private func bytes(_ key: SecureBytes) -> [UInt8] { key.withUnsafeBytes { Array($0) } }

    /// A competitor's wrapped key for `ref`, as another broker with the same master key makes it.
    private func competitor(_ ref: KeyRef) async throws -> (wrapped: [UInt8], key: [UInt8]) {
        let (wrapped, key) = try await LocalProvider(masterKey: masterKey, instance: "default").generateDataKey(for: ref, length: 32)
        return (wrapped, bytes(key))
    }

    func testKeysCreatedOnOneBrokerAreServedByTheOther() async throws {
        let a = try await broker("a"), b = try await broker("b")
        let created = try await a.latest(keyID: 7)
        let served = try await b.latest(keyID: 7)
        XCTAssertEqual(served.version, 1)
        XCTAssertEqual(bytes(served.key), bytes(created.key))
        XCTAssertEqual(bucket.objects.count, 1)
    }

    func testACreateThatLosesTheRaceAdoptsTheWinnersKey() async throws {
        let a = try await broker("a")
        let (wrapped, key) = try await competitor(KeyRef(keyID: 3, version: 1))
        bucket.state.withLock { $0.beforeCreate = { [bucket] ref in _ = bucket.put(ref, wrapped) } }
        let answer = try await a.latest(keyID: 3)
        XCTAssertEqual(answer.version, 1)
        XCTAssertEqual(bytes(answer.key), key, "the loser must serve the winner's key")
        XCTAssertEqual(bucket.objects[KeyRef(keyID: 3, version: 1)], wrapped)
    }

    func testARotationThatLosesTheRaceTakesTheNextVersion() async throws {
        let a = try await broker("a")
        _ = try await a.latest(keyID: 4)
        let (wrapped, key) = try await competitor(KeyRef(keyID: 4, version: 2))
        bucket.state.withLock { $0.beforeCreate = { [bucket] ref in if ref.version == 2 { _ = bucket.put(ref, wrapped) } } }
        let rotated = try await a.rotate(keyID: 4)
        XCTAssertEqual(rotated, [KeyRef(keyID: 4, version: 3)])
        let adopted = try await a.key(KeyRef(keyID: 4, version: 2))
        XCTAssertEqual(bytes(adopted), key)
        XCTAssertEqual(Set(bucket.objects.keys.filter { $0.keyID == 4 }.map(\.version)), [1, 2, 3])
    }

    func testRotationGivesUpAfterLosingEveryAttempt() async throws {
        let a = try await broker("a")
        _ = try await a.latest(keyID: 5)
        var theirs: [UInt32: [UInt8]] = [:]
        for version: UInt32 in 2...12 { theirs[version] = try await competitor(KeyRef(keyID: 5, version: version)).wrapped }
        let blobs = theirs
        // Another broker always takes the version first.
        bucket.state.withLock { $0.beforeCreate = { [bucket] ref in if let blob = blobs[ref.version] { _ = bucket.put(ref, blob) } } }
        do {
            _ = try await a.rotate(keyID: 5)
            XCTFail("a rotation that never wins must fail")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
            XCTAssertTrue(error.message.contains("being rotated elsewhere"), error.message)
        }
    }

    func testStoreDownServesTheCacheAndRefusesCreationWritingNothing() async throws {
        let a = try await broker("a")
        let known = try await a.latest(keyID: 1)
        bucket.down = true
        let served = try await a.latest(keyID: 1)
        XCTAssertEqual(bytes(served.key), bytes(known.key))
        do {
            _ = try await a.latest(keyID: 2)
            XCTFail("creation must fail while the store is down")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
        }
        do {
            _ = try await a.rotate(keyID: 1)
            XCTFail("rotation must fail while the store is down")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
        }
        // A restart while the store is down serves the cache.
        let restarted = try await broker("a")
        let cached = try await restarted.key(KeyRef(keyID: 1, version: 1))
        XCTAssertEqual(bytes(cached), bytes(known.key))
        XCTAssertEqual(Set(bucket.objects.keys), [KeyRef(keyID: 1, version: 1)])
        bucket.down = false
        let created = try await restarted.latest(keyID: 2)
        XCTAssertEqual(created.version, 1)
    }

    func testOtherBrokersVersionsAreFoundByRefreshAndByGetKeyAtOnce() async throws {
        let a = try await broker("a"), b = try await broker("b")
        _ = try await a.latest(keyID: 9)
        _ = try await b.latest(keyID: 9)
        _ = try await a.rotate(keyID: 9)
        // GET_KEY for a version b does not know looks in the store at once.
        let onB = try await b.key(KeyRef(keyID: 9, version: 2)), onA = try await a.key(KeyRef(keyID: 9, version: 2))
        XCTAssertEqual(bytes(onB), bytes(onA))
        _ = try await a.rotate(keyID: 9)
        let before = try await b.latest(keyID: 9)
        XCTAssertEqual(before.version, 2, "LATEST_KEY moves on at the refresh")
        let added = try await b.refreshFromStore()
        XCTAssertEqual(added, 1)
        let after = try await b.latest(keyID: 9)
        XCTAssertEqual(after.version, 3)
        let again = try await b.refreshFromStore()
        XCTAssertEqual(again, 0)
    }

    func testPushUploadsOnlyLocalVersionsOnceAndReportsConflicts() async throws {
        // A key set from before the store: files in the cache only.
        let provider = LocalProvider(masterKey: masterKey, instance: "default")
        let cache = KeyFileDirectory(path: "\(temporary.path)/old", prefix: provider.fileNamePrefix)
        try cache.prepare()
        for id: UInt32 in 1...3 {
            let ref = KeyRef(keyID: id, version: 1)
            let wrapped = try await provider.generateDataKey(for: ref, length: 32).wrapped
            try cache.writeNew(ref, bytes: wrapped)
        }
        let conflicting = try await competitor(KeyRef(keyID: 3, version: 1))
        _ = bucket.put(KeyRef(keyID: 3, version: 1), conflicting.wrapped)
        let store = try await broker("old")
        let status = try await store.sharedStoreReport()
        XCTAssertEqual(status.localOnly, [KeyRef(keyID: 1, version: 1), KeyRef(keyID: 2, version: 1)])
        let first = try await store.pushToSharedStore(concurrency: 4)
        XCTAssertEqual(Set(first.uploaded), [KeyRef(keyID: 1, version: 1), KeyRef(keyID: 2, version: 1)])
        XCTAssertEqual(first.failed.map(\.ref), [KeyRef(keyID: 3, version: 1)])
        XCTAssertTrue(first.failed[0].message.contains("exists with other bytes"), first.failed[0].message)
        XCTAssertEqual(bucket.objects[KeyRef(keyID: 3, version: 1)], conflicting.wrapped, "push never overwrites")
        let second = try await store.pushToSharedStore(concurrency: 4)
        XCTAssertEqual(second.uploaded, [])
        XCTAssertEqual(second.present.count, 2)
        let verify = try await store.verifySharedStore(concurrency: 4)
        XCTAssertEqual(verify.checked, 3)
        XCTAssertEqual(verify.verified, 2)
        XCTAssertEqual(verify.failed.map(\.ref), [KeyRef(keyID: 3, version: 1)])
    }

    func testALocalStoreHasNoSharedStoreCommands() async throws {
        let store = InstanceKeyStore(name: "default", provider: LocalProvider(masterKey: masterKey, instance: "default"),
                                     directory: "\(temporary.path)/plain", keyLength: 32, autoCreate: true,
                                     logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await store.open()
        do {
            _ = try await store.sharedStoreReport()
            XCTFail("a local store is not shared")
        } catch {
            XCTAssertEqual(error.code, .notFound)
            XCTAssertTrue(error.message.contains("set store = \"s3://BUCKET/PREFIX\""), error.message)
        }
    }
}
