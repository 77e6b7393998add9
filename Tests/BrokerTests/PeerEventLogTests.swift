@testable import Broker
import Logging
import Synchronization
import XCTest

/// Collects what a Logger writes.
final class CapturedLines: Sendable {
    let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func handler() -> some LogHandler { Handler(sink: self) }

    struct Handler: LogHandler {
        let sink: CapturedLines
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            sink.lines.withLock { $0.append("\(event.message)") }
        }
    }
}

final class PeerEventLogTests: XCTestCase {
    private func makeLog(interval: Duration) -> (PeerEventLog, CapturedLines) {
        let captured = CapturedLines()
        let logger = Logger(label: "test", factory: { _ in captured.handler() })
        return (PeerEventLog(logger: logger, interval: interval), captured)
    }

    func testOneLinePerPeerAndKindPerInterval() {
        let (log, captured) = makeLog(interval: .seconds(60))
        for _ in 0..<10_000 {
            log.report(.denied, uid: 1001, level: .warning) { "denied uid 1001" }
        }
        log.report(.denied, uid: 1002, level: .warning) { "denied uid 1002" }
        log.report(.refused, uid: 1001, level: .warning) { "refused uid 1001" }
        XCTAssertEqual(captured.all, ["denied uid 1001", "denied uid 1002", "refused uid 1001"])
    }

    func testTheNextLineCountsWhatWasLeftOut() throws {
        let (log, captured) = makeLog(interval: .milliseconds(50))
        for _ in 0..<5 {
            log.report(.denied, uid: 7, level: .warning) { "denied uid 7" }
        }
        Thread.sleep(forTimeInterval: 0.08)
        log.report(.denied, uid: 7, level: .warning) { "denied uid 7" }
        XCTAssertEqual(captured.all, ["denied uid 7", "denied uid 7 (4 more denied connections from uid 7 since the last line)"])
    }

    func testFlushSaysTheCountOfAQuietPeerAndThenForgetsIt() {
        let (log, captured) = makeLog(interval: .milliseconds(50))
        for _ in 0..<3 {
            log.report(.malformed, uid: 9, level: .warning) { "malformed from uid 9" }
        }
        log.flush()
        XCTAssertEqual(captured.all.count, 1, "nothing is due within the interval")
        Thread.sleep(forTimeInterval: 0.08)
        log.flush()
        XCTAssertEqual(captured.all.last, "2 more malformed requests from uid 9 in the last 50 ms")
        Thread.sleep(forTimeInterval: 0.08)
        log.flush()
        log.report(.malformed, uid: 9, level: .warning) { "malformed again" }
        XCTAssertEqual(captured.all.count, 3)
        XCTAssertEqual(captured.all.last, "malformed again")
    }

    func testMessagesAreBuiltOnlyWhenWritten() {
        let (log, _) = makeLog(interval: .seconds(60))
        let built = Atomic<Int>(0)
        for _ in 0..<100 {
            log.report(.denied, uid: 1, level: .warning) {
                built.add(1, ordering: .relaxed)
                return "line"
            }
        }
        XCTAssertEqual(built.load(ordering: .relaxed), 1)
    }

    func testTheTableOfPeersIsBounded() {
        let (log, captured) = makeLog(interval: .seconds(60))
        for uid in 0..<UInt32(PeerEventLog.maximumEntries + 1000) {
            log.report(.denied, uid: uid, level: .warning) { "denied uid \(uid)" }
        }
        XCTAssertEqual(captured.all.count, PeerEventLog.maximumEntries + 1, "past the table's size all further uids share one line")
    }
}
