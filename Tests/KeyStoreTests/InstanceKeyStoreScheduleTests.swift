import BrokerProtocol
import KeyStore
import KMS
import Logging
import SecureMemory
import SystemSupport
import TestSupport
import XCTest

/// Scheduled rotation against the directory store, with two stores on one directory standing in
/// for two brokers sharing a store.
final class InstanceKeyStoreScheduleTests: XCTestCase {
    private let temporary = TemporaryDirectory("keystore-schedule")
    private let master = SecureBytes(copying: [UInt8](repeating: 7, count: 32))

    private func makeStore() async throws -> InstanceKeyStore {
        let store = InstanceKeyStore(name: "default", provider: LocalProvider(masterKey: master, instance: "default"), directory: "\(temporary.path)/default",
                                     keyLength: 32, autoCreate: true, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await store.open()
        store.rotateAfterSeconds = 60
        return store
    }

    func testOnlyKeysOlderThanThePeriodAreRotated() async throws {
        let store = try await makeStore()
        for id: UInt32 in 1...3 { _ = try await store.latest(keyID: id) }
        let now = unixNowMilliseconds()
        let early = await store.rotateDueKeys(now: now + 59_000)
        XCTAssertTrue(early.rotated.isEmpty)
        XCTAssertEqual(early.nextDue.map { abs($0 - (now + 60_000)) < 5_000 }, true)
        let due = await store.rotateDueKeys(now: now + 61_000)
        XCTAssertEqual(due.rotated.map(\.version), [2, 2, 2])
        XCTAssertTrue(due.failed.isEmpty)
        let again = await store.rotateDueKeys(now: unixNowMilliseconds() + 30_000)
        XCTAssertTrue(again.rotated.isEmpty, "the new versions are not due")
    }

    func testTwoStoresOnOneDirectoryWriteOneVersionPerPeriod() async throws {
        let first = try await makeStore()
        for id: UInt32 in 1...20 { _ = try await first.latest(keyID: id) }
        let second = try await makeStore()
        let later = unixNowMilliseconds() + 61_000
        async let a = first.rotateDueKeys(now: later)
        async let b = second.rotateDueKeys(now: later)
        let (reportA, reportB) = await (a, b)
        let written = reportA.rotated.count + reportB.rotated.count
        XCTAssertEqual(written, 20, "one new version per key between the two, not one each")
        XCTAssertEqual(reportA.rotated.count + reportA.adopted.count, 20)
        XCTAssertEqual(reportB.rotated.count + reportB.adopted.count, 20)
        let versions = try KeyFileDirectory(path: "\(temporary.path)/default", prefix: "local-key").scan(removingLeftovers: false)
        XCTAssertEqual(Set(versions.values.map { $0 }), [[1, 2]])
        for id: UInt32 in 1...20 {
            let fromFirst = try await first.latest(keyID: id)
            let fromSecond = try await second.latest(keyID: id)
            XCTAssertEqual(fromFirst.version, 2)
            XCTAssertEqual(fromSecond.version, 2)
            XCTAssertTrue(fromFirst.key.isEqual(to: fromSecond.key), "both serve the bytes on disk")
        }
    }
}
