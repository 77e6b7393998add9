import BrokerConfiguration
import Glibc
import TestSupport
import XCTest

final class ConfigFileTests: XCTestCase {
    private let temporary = TemporaryDirectory("config-test")
    private var path: String { temporary.path + "/keybroker.toml" }

    /// A valid configuration padded with a comment to `size` bytes.
    private func write(size: Int) {
        let body = "[instances.default]\nmaster_key_file = \"/etc/keybroker/master.key\"\n"
        let text = body + "#" + String(repeating: "x", count: size - body.utf8.count - 2) + "\n"
        XCTAssertEqual(text.utf8.count, size)
        temporary.write("keybroker.toml", text)
    }

    func testAFileAtTheSizeLimitLoadsAndOneByteMoreIsRefused() throws {
        write(size: BrokerConfig.maximumFileSize)
        XCTAssertEqual(try BrokerConfig.load(path: path).instances.map(\.name), ["default"])
        write(size: BrokerConfig.maximumFileSize + 1)
        XCTAssertThrowsError(try BrokerConfig.load(path: path)) { error in
            XCTAssertEqual("\(error)", "\(path): cannot read the configuration: it is larger than \(BrokerConfig.maximumFileSize) bytes")
        }
    }

    func testAMissingFileNamesTheReason() {
        XCTAssertThrowsError(try BrokerConfig.load(path: path)) { error in
            XCTAssertEqual("\(error)", "\(path): cannot read the configuration: No such file or directory")
        }
    }
}
