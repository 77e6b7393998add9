import BrokerProtocol
import Glibc
import KMS
import KeyStore
import Logging
import SecureMemory
import XCTest

final class InstanceKeyStoreTests: XCTestCase {
    private var directory = ""
    private let masterKey = SecureBytes(copying: [UInt8](repeating: 0x42, count: 32))

    override func setUp() {
        var template = Array("/tmp/keystore-test-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    override func tearDown() {
        _ = system("rm -rf '\(directory)'")
    }

    private func makeStore(instance: String = "default", autoCreate: Bool = true, keyLength: Int = 32) async throws -> InstanceKeyStore {
        let store = InstanceKeyStore(name: instance, provider: LocalProvider(masterKey: masterKey, instance: instance),
                                     directory: "\(directory)/\(instance)", keyLength: keyLength, autoCreate: autoCreate,
                                     logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await store.open()
        return store
    }

    /// The key files (the key set's identity aside: KeySetIdentityTests).
    private func files(_ instance: String = "default") -> [String] {
        guard let dir = opendir("\(directory)/\(instance)") else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." && name != KeyFileDirectory.keySetFileName { names.append(name) }
        }
        return names.sorted()
    }

    private func bytes(_ key: SecureBytes) -> [UInt8] { key.withUnsafeBytes { Array($0) } }

    func testFirstLatestCreatesVersionOneOfTheConfiguredLength() async throws {
        let store = try await makeStore(keyLength: 16)
        let (version, key) = try await store.latest(keyID: 5)
        XCTAssertEqual(version, 1)
        XCTAssertEqual(key.count, 16)
        XCTAssertEqual(files(), ["local-key.5.1"])
        let awaited1 = try await store.key(KeyRef(keyID: 5, version: 1))
        XCTAssertEqual(bytes(awaited1), bytes(key))
    }

    func testConcurrentFirstRequestsCreateTheKeyOnce() async throws {
        let store = try await makeStore()
        let results = try await withThrowingTaskGroup(of: (UInt32, [UInt8]).self) { group in
            for _ in 0..<64 {
                group.addTask {
                    let (version, key) = try await store.latest(keyID: 9)
                    return (version, key.withUnsafeBytes { Array($0) })
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(Set(results.map(\.0)), [1])
        XCTAssertEqual(Set(results.map(\.1)).count, 1, "every caller must get the same key")
        XCTAssertEqual(files(), ["local-key.9.1"])
    }

    func testRotationAddsVersionsAndKeepsOldOnes() async throws {
        let store = try await makeStore()
        let (_, v1) = try await store.latest(keyID: 1)
        _ = try await store.latest(keyID: 2)
        let awaited2 = try await store.rotate(keyID: 1)
        XCTAssertEqual(awaited2, [RotatedVersion(keyID: 1, version: 2)])
        let all = try await store.rotate(keyID: nil)
        XCTAssertEqual(all, [RotatedVersion(keyID: 1, version: 3), RotatedVersion(keyID: 2, version: 2)])
        let awaited3 = try await store.latest(keyID: 1).version
        XCTAssertEqual(awaited3, 3)
        let awaited4 = try await store.key(KeyRef(keyID: 1, version: 1))
        XCTAssertEqual(bytes(awaited4), bytes(v1))
        XCTAssertEqual(files(), ["local-key.1.1", "local-key.1.2", "local-key.1.3", "local-key.2.1", "local-key.2.2"])
    }

    func testConcurrentRotationsNeverReuseAVersion() async throws {
        let store = try await makeStore()
        _ = try await store.latest(keyID: 1)
        let versions = try await withThrowingTaskGroup(of: UInt32.self) { group in
            for _ in 0..<20 { group.addTask { try await store.rotate(keyID: 1)[0].version } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(Set(versions), Set(2...21))
    }

    /// The cached LATEST_KEY answer is the index's newest version, and only while that version's
    /// key is in memory: never an older version after a rotation or an adoption from the store.
    func testCachedLatestFollowsTheIndexAndTheKeysInMemory() async throws {
        let store = try await makeStore()
        func cachedLatest() -> (UInt32, [UInt8])? {
            var seen: (UInt32, [UInt8])?
            return store.withCachedLatest(keyID: 7) { seen = ($0, Array($1)) } ? seen : nil
        }
        func cachedKey(_ version: UInt32) -> [UInt8]? {
            var seen: [UInt8]?
            return store.withCachedKey(KeyRef(keyID: 7, version: version)) { seen = Array($0) } ? seen : nil
        }
        XCTAssertNil(cachedLatest())
        let (_, first) = try await store.latest(keyID: 7)
        XCTAssertEqual(cachedLatest()?.0, 1)
        XCTAssertEqual(cachedLatest()?.1, bytes(first))
        let second = try await store.rotate(keyID: 7)[0]
        XCTAssertEqual(second.version, 2)
        let secondKey = try await store.key(second)
        XCTAssertEqual(cachedLatest()?.0, 2)
        XCTAssertEqual(cachedLatest()?.1, bytes(secondKey))
        XCTAssertNotEqual(bytes(first), bytes(secondKey))

        store.releaseKeys()
        XCTAssertNil(cachedLatest())
        _ = try await store.key(KeyRef(keyID: 7, version: 1))
        XCTAssertNil(cachedLatest(), "version 1 is in memory, but it is not the newest")
        XCTAssertEqual(cachedKey(1), bytes(first))
        _ = try await store.key(second)
        XCTAssertEqual(cachedLatest()?.0, 2)

        // Another broker on the same directory writes version 3: once the index has it, the
        // cached answer stops until version 3 is unwrapped here.
        let other = try await makeStore()
        let third = try await other.rotate(keyID: 7)[0]
        XCTAssertEqual(third.version, 3)
        let adopted = try await store.refreshFromStore()
        XCTAssertEqual(adopted, 1)
        XCTAssertNil(cachedLatest())
        XCTAssertEqual(cachedKey(2), bytes(secondKey))
        let thirdKey = try await store.key(third)
        XCTAssertEqual(cachedLatest()?.0, 3)
        XCTAssertEqual(cachedLatest()?.1, bytes(thirdKey))

        try await store.open()
        XCTAssertEqual(cachedLatest()?.0, 3, "reopening rebuilds the index; the keys in memory still answer")
    }

    func testIndexAndBytesSurviveReopening() async throws {
        var store = try await makeStore()
        let (_, key) = try await store.latest(keyID: 3)
        _ = try await store.rotate(keyID: 3)
        store = try await makeStore()
        XCTAssertFalse(store.withCachedKey(KeyRef(keyID: 3, version: 1)) { _ in })
        XCTAssertEqual(store.summary().versions, 2)
        let awaited5 = try await store.latest(keyID: 3).version
        XCTAssertEqual(awaited5, 2)
        let awaited6 = try await store.key(KeyRef(keyID: 3, version: 1))
        XCTAssertEqual(bytes(awaited6), bytes(key))
    }

    func testTamperedFileIsCorruptAndNeverServed() async throws {
        var store = try await makeStore()
        _ = try await store.latest(keyID: 4)
        let path = "\(directory)/default/local-key.4.1"
        chmod(path, 0o600)
        let fd = open(path, O_RDWR)
        var byte: UInt8 = 0
        pread(fd, &byte, 1, 30)
        byte ^= 1
        pwrite(fd, &byte, 1, 30)
        close(fd)
        store = try await makeStore()
        do {
            _ = try await store.latest(keyID: 4)
            XCTFail("a tampered key was served")
        } catch {
            XCTAssertEqual(error.code, .corrupt)
            XCTAssertTrue(error.message.contains(path), error.message)
        }
    }

    func testKeyFileIsBoundToItsInstanceIdAndVersion() async throws {
        let store = try await makeStore()
        _ = try await store.latest(keyID: 1)
        // Copy version 1 as version 2: the associated data no longer matches.
        XCTAssertEqual(link("\(directory)/default/local-key.1.1", "\(directory)/default/local-key.1.2"), 0)
        let reopened = try await makeStore()
        do {
            _ = try await reopened.key(KeyRef(keyID: 1, version: 2))
            XCTFail("a moved key file authenticated")
        } catch {
            XCTAssertEqual(error.code, .corrupt)
        }
    }

    func testAutoCreateOffGivesNotFound() async throws {
        let store = try await makeStore(autoCreate: false)
        do {
            _ = try await store.latest(keyID: 1)
            XCTFail("created a key with auto_create off")
        } catch {
            XCTAssertEqual(error.code, .notFound)
        }
        XCTAssertEqual(files(), [])
    }

    func testUnknownVersionAndZeroAreNotFound() async throws {
        let store = try await makeStore()
        _ = try await store.latest(keyID: 1)
        for ref in [KeyRef(keyID: 1, version: 2), KeyRef(keyID: 0, version: 1), KeyRef(keyID: 1, version: 0)] {
            do {
                _ = try await store.key(ref)
                XCTFail("\(ref) was served")
            } catch {
                XCTAssertEqual(error.code, .notFound)
            }
        }
    }

    func testLeftoverTemporaryFilesAreIgnoredAndRemoved() async throws {
        _ = try await makeStore()
        let leftover = "\(directory)/default/.tmp-local-key.7.1.abc"
        close(open(leftover, O_CREAT | O_WRONLY, 0o600))
        let store = try await makeStore()
        XCTAssertEqual(store.summary().keyIDs, 0)
        XCTAssertEqual(files(), [])
        let awaited7 = try await store.latest(keyID: 7).version
        XCTAssertEqual(awaited7, 1)
    }

    func testAnExistingVersionIsNeverOverwritten() throws {
        let directory = KeyFileDirectory(path: "\(self.directory)/raw", prefix: "local-key")
        try directory.prepare()
        try directory.writeNew(KeyRef(keyID: 1, version: 1), bytes: [1, 2, 3])
        XCTAssertThrowsError(try directory.writeNew(KeyRef(keyID: 1, version: 1), bytes: [9])) { error in
            XCTAssertEqual((error as? StorageError)?.errno, EEXIST)
        }
        XCTAssertEqual(try directory.read(KeyRef(keyID: 1, version: 1)), [1, 2, 3])
    }

    func testFileNamesAreParsedStrictly() {
        let directory = KeyFileDirectory(path: "/x", prefix: "local-key")
        XCTAssertEqual(directory.parse("local-key.12.3"), KeyRef(keyID: 12, version: 3))
        for name in ["local-key.0.1", "local-key.1.0", "local-key.01.1", "local-key.1", "local-key.1.2.3", "aws-kms-key.1.1", "local-key.1.x", "local-key.4294967296.1"] {
            XCTAssertNil(directory.parse(name), name)
        }
    }

    func testWarmUpLoadsEveryStoredVersion() async throws {
        var store = try await makeStore()
        for id in 1...30 { _ = try await store.latest(keyID: UInt32(id)) }
        store = try await makeStore()
        XCTAssertEqual(store.summary().loaded, 0)
        let failures = await store.warmUp(concurrency: 4)
        XCTAssertEqual(failures, 0)
        XCTAssertEqual(store.summary().loaded, 30)
    }
}
