import Glibc
import Synchronization
import SystemSupport
import TestSupport
import XCTest

final class HexTests: XCTestCase {
    func testEncodesEveryByteWithTwoDigits() {
        XCTAssertEqual(Hex.encode([0x00, 0x0f, 0xa5, 0xff]), "000fa5ff")
        XCTAssertEqual(Hex.encode([0x2f], uppercase: true), "2F")
        XCTAssertEqual(Hex.encode([]), "")
        XCTAssertEqual(Hex.encodedBytes([0xab]), Array("ab".utf8))
    }

    func testDigitValues() {
        XCTAssertEqual(Hex.value(of: UInt8(ascii: "0")), 0)
        XCTAssertEqual(Hex.value(of: UInt8(ascii: "f")), 15)
        XCTAssertEqual(Hex.value(of: UInt8(ascii: "F")), 15)
        XCTAssertNil(Hex.value(of: UInt8(ascii: "g")))
        XCTAssertNil(Hex.value(of: UInt8(ascii: " ")))
    }
}

final class SystemErrorTests: XCTestCase {
    func testErrnoText() {
        XCTAssertEqual(errnoText(ENOENT), "No such file or directory")
        XCTAssertEqual(SystemError(path: "/x", operation: "open", errno: EACCES).description, "cannot open /x: Permission denied (errno 13)")
    }
}

final class FileTests: XCTestCase {
    private let temporary = TemporaryDirectory("systemsupport-test")
    private var directory: String { temporary.path }

    private func write(_ name: String, _ bytes: [UInt8]) -> String {
        temporary.write(name, bytes)
    }

    func testReadsAWholeFileUpToTheLimitAndNotOneByteMore() throws {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0) }
        let path = write("data", bytes)
        XCTAssertEqual(try SmallFile.read(path: path, limit: 10_000), bytes)
        XCTAssertThrowsError(try SmallFile.read(path: path, limit: 9_999)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EFBIG)
        }
        XCTAssertEqual(try SmallFile.read(path: write("empty", []), limit: 0), [])
    }

    func testMissingFilesAndLinksAreNamedErrors() throws {
        XCTAssertThrowsError(try SmallFile.read(path: "\(directory)/absent", limit: 10)) { error in
            XCTAssertEqual(error as? SystemError, SystemError(path: "\(directory)/absent", operation: "open", errno: ENOENT))
        }
        let target = write("target", [1, 2, 3])
        XCTAssertEqual(symlink(target, "\(directory)/link"), 0)
        XCTAssertEqual(try SmallFile.read(path: "\(directory)/link", limit: 10), [1, 2, 3])
        XCTAssertThrowsError(try SmallFile.read(path: "\(directory)/link", limit: 10, followSymlinks: false)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ELOOP)
        }
    }

    func testOpenedFileReadsIntoABuffer() throws {
        let file = try OpenedFile(path: write("short", [7, 8, 9]))
        var buffer = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(try file.read(into: &buffer), 3)
        XCTAssertEqual(Array(buffer.prefix(3)), [7, 8, 9])
        XCTAssertEqual(try file.status().st_size, 3)
    }

    func testPrivateDirectoryIsCreatedOnceWithMode0700() throws {
        let path = "\(directory)/private"
        XCTAssertTrue(try PrivateDirectory.create(path))
        XCTAssertFalse(try PrivateDirectory.create(path))
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
        let file = write("file", [1])
        XCTAssertThrowsError(try PrivateDirectory.create(file, what: "key directory")) { error in
            XCTAssertEqual(error as? SystemError, SystemError(path: file, operation: "use as key directory", errno: ENOTDIR))
        }
        XCTAssertThrowsError(try PrivateDirectory.create("\(directory)/no/such/parent")) { error in
            XCTAssertEqual((error as? SystemError)?.operation, "create directory")
            XCTAssertEqual((error as? SystemError)?.errno, ENOENT)
        }
    }
}

final class JSONValueTests: XCTestCase {
    func testDocumentsKeepTheirOrderAndEscapeStrings() {
        let document: JSONValue = .object([
            ("z", .int(-1)), ("a", .array([.bool(true), .null, .string("x\"y\\\n\t\u{1}é")])), ("o", .object([])),
        ])
        XCTAssertEqual(document.serialized, #"{"z":-1,"a":[true,null,"x\"y\\\n\t\u0001é"],"o":{}}"#)
        XCTAssertEqual(JSONText.quoted("\u{1f}"), #""\u001f""#)
    }
}

final class CivilTimeTests: XCTestCase {
    func testFormats() {
        let time = CivilTime(unix: 1_440_938_160)
        XCTAssertEqual(time.iso8601, "2015-08-30T12:36:00Z")
        XCTAssertEqual(time.basicDate, "20150830")
        XCTAssertEqual(time.basicTimestamp, "20150830T123600Z")
        XCTAssertEqual(CivilTime(unix: 0).iso8601, "1970-01-01T00:00:00Z")
        XCTAssertEqual(CivilTime.parseISO8601(CivilTime(unix: 4_102_444_799).iso8601), 4_102_444_799)
    }

    func testNowIsTheWallClock() {
        XCTAssertEqual(Double(unixNow()), Double(time(nil)), accuracy: 2)
    }
}

final class BoundedConcurrencyTests: XCTestCase {
    func testResultsKeepTheOrderAndAtMostLimitRunAtOnce() async {
        let running = Atomic<Int>(0)
        let peak = Atomic<Int>(0)
        let results = await mapWithBoundedConcurrency(Array(0..<200), limit: 7) { value in
            let now = running.add(1, ordering: .relaxed).newValue
            peak.max(now, ordering: .relaxed)
            try? await Task.sleep(for: .milliseconds(1))
            running.subtract(1, ordering: .relaxed)
            return value * 2
        }
        XCTAssertEqual(results, (0..<200).map { $0 * 2 })
        XCTAssertLessThanOrEqual(peak.load(ordering: .relaxed), 7)
        XCTAssertGreaterThan(peak.load(ordering: .relaxed), 1, "the calls should overlap")
    }

    func testALimitBelowOneRunsOneAtATime() async {
        let peak = Atomic<Int>(0)
        let running = Atomic<Int>(0)
        let results = await mapWithBoundedConcurrency([1, 2, 3], limit: 0) { value in
            peak.max(running.add(1, ordering: .relaxed).newValue, ordering: .relaxed)
            await Task.yield()
            running.subtract(1, ordering: .relaxed)
            return value
        }
        XCTAssertEqual(results, [1, 2, 3])
        XCTAssertEqual(peak.load(ordering: .relaxed), 1)
        let none = await mapWithBoundedConcurrency([Int](), limit: 4) { $0 }
        XCTAssertEqual(none, [])
    }
}
