import Glibc
import SystemSupport
import XCTest

/// The ownership rules on real directories under a private temporary directory (as root in CI,
/// where only root and the test's own uid are trusted owners).
final class PathTrustTests: XCTestCase {
    private var base = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/pathtrust-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw XCTSkip("mkdtemp failed") }
        base = String(cString: made)
        chmod(base, 0o755)
    }

    override func tearDown() {
        _ = system("rm -rf '\(base)'")
    }

    private func refusal(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testNormalizedResolvesDotsByName() {
        XCTAssertEqual(PathTrust.normalized("/a/./b/../c//d/"), "/a/c/d")
        XCTAssertEqual(PathTrust.normalized("/"), "/")
        XCTAssertTrue(PathTrust.normalized("relative/x").hasSuffix("/relative/x"))
        XCTAssertTrue(PathTrust.normalized("relative/x").hasPrefix("/"))
    }

    func testOwnedDirectoryIsAcceptedAndCreatedPrivate() throws {
        let path = "\(base)/state"
        XCTAssertNil(refusal { try PathTrust.checkDirectory(path, create: true, privateMode: true) })
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
    }

    func testGroupWritableDirectoryIsRefusedWithTheFix() {
        let path = "\(base)/sock"
        mkdir(path, 0o770)
        chmod(path, 0o770)
        let line = refusal { try PathTrust.checkDirectory(path, create: false, privateMode: false) }
        XCTAssertNotNil(line)
        XCTAssertTrue(line?.contains("\(path) is writable by group") ?? false, line ?? "")
        XCTAssertTrue(line?.contains("mode 0770") ?? false, line ?? "")
        XCTAssertTrue(line?.contains("run: chmod go-w \(path)") ?? false, line ?? "")
    }

    func testPrivateDirectoryOpenToOthersIsRefused() {
        let path = "\(base)/state"
        mkdir(path, 0o755)
        chmod(path, 0o755)
        let line = refusal { try PathTrust.checkDirectory(path, create: false, privateMode: true) }
        XCTAssertTrue(line?.contains("chmod 700 \(path)") ?? false, line ?? "")
    }

    func testSymbolicLinkOnTheWayIsRefused() {
        mkdir("\(base)/real", 0o755)
        symlink("\(base)/real", "\(base)/link")
        let line = refusal { try PathTrust.checkDirectory("\(base)/link/state", create: true, privateMode: true) }
        XCTAssertTrue(line?.contains("\(base)/link (above \(base)/link/state) is a symbolic link to \(base)/real") ?? false, line ?? "")
        XCTAssertTrue(line?.contains("instead: \(base)/real/state") ?? false, line ?? "")
        XCTAssertEqual(access("\(base)/real/state", F_OK), -1, "nothing is created through the link")
    }

    func testSymbolicLinkAsTheDirectoryIsRefused() {
        mkdir("\(base)/real", 0o700)
        symlink("\(base)/real", "\(base)/state")
        let line = refusal { try PathTrust.checkDirectory("\(base)/state", create: true, privateMode: true) }
        XCTAssertTrue(line?.contains("is a symbolic link") ?? false, line ?? "")
    }

    func testWorldWritableParentIsRefusedUnlessSticky() {
        mkdir("\(base)/open", 0o777)
        chmod("\(base)/open", 0o777)
        mkdir("\(base)/open/state", 0o700)
        let line = refusal { try PathTrust.checkDirectory("\(base)/open/state", create: false, privateMode: true) }
        XCTAssertTrue(line?.contains("is writable by every user") ?? false, line ?? "")
        chmod("\(base)/open", 0o1777)
        XCTAssertNil(refusal { try PathTrust.checkDirectory("\(base)/open/state", create: false, privateMode: true) },
                     "a sticky directory (like /tmp) lets no one else rename what is in it")
    }

    func testForeignOwnerIsRefused() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to give a directory away") }
        let path = "\(base)/theirs"
        mkdir(path, 0o700)
        chown(path, 65534, 65534)
        let line = refusal { try PathTrust.checkDirectory(path, create: false, privateMode: true) }
        XCTAssertTrue(line?.contains("belongs to") ?? false, line ?? "")
        XCTAssertTrue(line?.contains("uid 65534") ?? false, line ?? "")
        XCTAssertTrue(line?.contains("run: chown") ?? false, line ?? "")
    }

    func testFilesAreReadWithoutFollowingLinksOrBlockingOnFIFOs() {
        let file = "\(base)/config"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        _ = write(fd, "abc", 3)
        close(fd)
        XCTAssertEqual(try? PathTrust.readFile(file, privateMode: false, limit: 100), Array("abc".utf8))
        XCTAssertTrue(refusal { _ = try PathTrust.readFile(file, privateMode: true, limit: 100) }?.contains("chmod 600") ?? false)
        XCTAssertTrue(refusal { _ = try PathTrust.readFile(file, privateMode: false, limit: 2) }?.contains("larger than 2 bytes") ?? false)
        chmod(file, 0o666)
        XCTAssertTrue(refusal { _ = try PathTrust.readFile(file, privateMode: false, limit: 100) }?.contains("writable by every user") ?? false)
        chmod(file, 0o644)
        symlink(file, "\(base)/link")
        XCTAssertTrue(refusal { _ = try PathTrust.readFile("\(base)/link", privateMode: false, limit: 100) }?.contains("is a symbolic link") ?? false)
        mkfifo("\(base)/fifo", 0o644)
        let line = refusal { _ = try PathTrust.readFile("\(base)/fifo", privateMode: false, limit: 100) }
        XCTAssertTrue(line?.contains("is a FIFO, not a regular file") ?? false, line ?? "")
    }
}
