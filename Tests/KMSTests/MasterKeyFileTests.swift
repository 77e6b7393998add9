import Glibc
import KMS
import SecureMemory
import TestSupport
import XCTest

final class MasterKeyFileTests: XCTestCase {
    private let temporary = TemporaryDirectory("masterkey-test")
    private var directory: String { temporary.path }

    private func write(_ name: String, _ text: String, mode: mode_t = 0o600) -> String {
        temporary.write(name, text, mode: mode)
    }

    private func assertRefused(_ path: String, requirePrivateMode: Bool = true, _ fragment: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try MasterKeyFile.read(path: path, requirePrivateMode: requirePrivateMode), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(fragment) && text.contains(path), text, file: file, line: line)
        }
    }

    func testCreateWritesA256BitKeyInHexWithMode0600AndNeverReplacesIt() throws {
        let path = "\(directory)/master.key"
        try MasterKeyFile.create(path: path)
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(text.count, 65)
        XCTAssertTrue(text.hasSuffix("\n") && text.dropLast().allSatisfy { $0.isHexDigit && !$0.isUppercase }, text)
        let key = try MasterKeyFile.read(path: path)
        XCTAssertEqual(key.count, 32)
        XCTAssertEqual(key.withUnsafeBytes { Array($0) }.map { String(format: "%02x", $0) }.joined(), String(text.dropLast()))
        XCTAssertThrowsError(try MasterKeyFile.create(path: path)) { error in
            XCTAssertTrue("\(error)".contains("never replaces a master key"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), text)
    }

    func testReadAcceptsEitherCaseAndLineEnding() throws {
        let hex = String(repeating: "aB", count: 32)
        for ending in ["", "\n", "\r\n"] {
            let key = try MasterKeyFile.read(path: write("k\(ending.count)", hex + ending))
            XCTAssertEqual(key.withUnsafeBytes { Array($0) }, [UInt8](repeating: 0xab, count: 32))
        }
    }

    func testBadFilesAreRefusedWithTheFix() {
        let good = String(repeating: "0", count: 64)
        assertRefused(write("open", good, mode: 0o644), "readable by group or others (mode 0644, owner ")
        assertRefused("\(directory)/open", "; run: chmod 600 \(directory)/open")
        assertRefused(write("group", good, mode: 0o640), "chmod 600")
        XCTAssertNoThrow(try MasterKeyFile.read(path: write("credential", good, mode: 0o640), requirePrivateMode: false))
        assertRefused(write("short", "abcd\n"), "must hold 64 hex characters (a 256-bit key); create one with: keybrokerctl init-local")
        assertRefused(write("long", good + "00"), "must hold 64 hex characters")
        assertRefused(write("nothex", String(repeating: "g", count: 64)), "a character that is not hex")
        assertRefused("\(directory)/absent", "master key file \(directory)/absent cannot be opened: No such file or directory")
        assertRefused(directory, "is a directory, not a regular file")
    }
}
