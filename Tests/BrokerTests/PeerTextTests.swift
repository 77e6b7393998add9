@testable import Broker
import XCTest

final class PeerTextTests: XCTestCase {
    func testPrintableASCIIIsKeptInQuotes() {
        XCTAssertEqual(PeerText.quoted("mariadbd-1"), "\"mariadbd-1\"")
    }

    func testNewlinesEscapesAndQuotesCannotEndTheLine() {
        XCTAssertEqual(PeerText.quoted("a\nb\r\tc\u{1B}[2J\"\\"), #""a\nb\r\tc\x1b[2J\"\\""#)
    }

    func testNonASCIIIsWrittenAsCodePoints() {
        // bidi overrides and line separators would reorder or split a line in a terminal
        XCTAssertEqual(PeerText.quoted("d\u{E9}faut\u{202E}\u{2028}"), #""d\u{e9}faut\u{202e}\u{2028}""#)
    }

    func testLongStringsAreCutAndTheirSizeSaid() {
        let quoted = PeerText.quoted(String(repeating: "A", count: 65_000))
        XCTAssertEqual(quoted, "\"" + String(repeating: "A", count: 64) + "\"...(65000 bytes)")
        XCTAssertEqual(PeerText.quoted(String(repeating: "B", count: 64)), "\"" + String(repeating: "B", count: 64) + "\"")
    }
}
