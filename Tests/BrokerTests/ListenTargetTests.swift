import Broker
import Glibc
import TestSupport
import XCTest

final class ListenTargetTests: XCTestCase {
    private let temporary = TemporaryDirectory("listen-test")
    private var directory: String { temporary.path }

    /// A Unix socket bound at `path`, listening when asked.
    private func bind(_ path: String, listen: Bool) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        if listen { XCTAssertEqual(Glibc.listen(fd, 1), 0) }
        return fd
    }

    private func failure(_ path: String) -> ListenTarget.Failure? {
        do {
            try ListenTarget.prepareToBind(path)
            return nil
        } catch {
            return error
        }
    }

    func testAFreePathAndAStaleSocketMayBeBound() {
        XCTAssertNil(failure("\(directory)/free.sock"))
        let stale = "\(directory)/stale.sock"
        close(bind(stale, listen: false))
        XCTAssertNil(failure(stale))
        var info = stat()
        XCTAssertNotEqual(lstat(stale, &info), 0, "the stale socket file is removed")
    }

    func testALiveServerIsRefusedButIsNotAMisconfiguration() throws {
        let path = "\(directory)/live.sock"
        let fd = bind(path, listen: true)
        defer { close(fd) }
        let error = try XCTUnwrap(failure(path))
        XCTAssertTrue(error.description.contains("another server is listening"), error.description)
        XCTAssertFalse(error.isMisconfiguration, "it may stop: systemd should try again")
    }

    func testWrongPathsAreMisconfigurations() throws {
        let file = "\(directory)/file"
        fclose(fopen(file, "w"))
        let notSocket = try XCTUnwrap(failure(file))
        XCTAssertTrue(notSocket.description.contains("is not a socket"), notSocket.description)
        XCTAssertTrue(notSocket.isMisconfiguration)

        let open = "\(directory)/open"
        XCTAssertEqual(mkdir(open, 0o777), 0)
        XCTAssertEqual(chmod(open, 0o777), 0)
        let writable = try XCTUnwrap(failure("\(open)/kb.sock"))
        XCTAssertTrue(writable.description.contains("writable by every user"), writable.description)
        XCTAssertTrue(writable.isMisconfiguration)
    }
}
