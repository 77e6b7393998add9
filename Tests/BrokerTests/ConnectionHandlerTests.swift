@testable import Broker
import BrokerPolicy
import BrokerProtocol
import CKeybrokerSystem
import Glibc
import KeyStore
import KMS
import Logging
import NIOCore
import NIOEmbedded
import SecureMemory
import TestSupport
import XCTest

final class ConnectionHandlerTests: XCTestCase {
    private let temporary = TemporaryDirectory("connection-test")
    private var store: InstanceKeyStore!

    override func setUp() async throws {
        store = try await .cachedForTests(in: "\(temporary.path)/default")
    }

    private func limits(frame: Int = 1000, idle: Int = 0, output: Int = 128 * 1024) -> Limits {
        var limits = Limits()
        limits.frameTimeoutMilliseconds = frame
        limits.idleTimeoutMilliseconds = idle
        limits.maxOutputBytesPerConnection = output
        return limits
    }

    // MARK: Timeouts

    func testNoHelloWithinTheFrameTimeoutCloses() throws {
        let connection = try Connection(store: store, limits: limits(frame: 1000))
        connection.advance(milliseconds: 900)
        XCTAssertTrue(connection.isOpen)
        connection.advance(milliseconds: 400)
        XCTAssertFalse(connection.isOpen)
        XCTAssertEqual(connection.timedOut, 1)
        XCTAssertEqual(connection.lines(containing: "no HELLO within 1000 ms (frame_timeout_ms)").count, 1, "\(connection.log.all)")
    }

    func testAFrameLeftIncompleteCloses() throws {
        let connection = try Connection(store: store, limits: limits(frame: 1000))
        try connection.hello()
        try connection.sendBytes([0, 0, 0, 9, 2, 0])  // LATEST_KEY, 3 of 9 bytes
        connection.advance(milliseconds: 900)
        XCTAssertTrue(connection.isOpen)
        try connection.sendBytes([0, 0])  // still not whole: the clock does not restart
        connection.advance(milliseconds: 400)
        XCTAssertFalse(connection.isOpen)
        XCTAssertEqual(connection.lines(containing: "still incomplete (frame_timeout_ms)").count, 1, "\(connection.log.all)")
    }

    func testAFrameThatArrivesInPiecesInTimeIsAnswered() throws {
        let connection = try Connection(store: store, limits: limits(frame: 1000))
        try connection.hello()
        var buffer = ByteBuffer()
        Request(requestID: 7, body: .latestKey(keyID: 2)).encode(into: &buffer)
        for byte in buffer.readableBytesView {
            try connection.sendBytes([byte])
            connection.advance(milliseconds: 50)
        }
        let answer = try XCTUnwrap(try connection.answers().first)
        XCTAssertEqual(answer.requestID, 7)
        guard case let .latestKey(version, key) = answer.body else { return XCTFail("\(answer.body)") }
        XCTAssertEqual(version, 1)
        XCTAssertEqual(key.readableBytes, 32)
        XCTAssertTrue(connection.isOpen)
    }

    func testAnIdleConnectionClosesAfterTheIdleTimeoutAndARequestRestartsIt() throws {
        let connection = try Connection(store: store, limits: limits(frame: 1000, idle: 3000))
        try connection.hello()
        connection.advance(milliseconds: 2500)
        try connection.send(.latestKey(keyID: 1))
        connection.advance(milliseconds: 2500)
        XCTAssertTrue(connection.isOpen, "the request restarted the idle clock")
        connection.advance(milliseconds: 1000)
        XCTAssertFalse(connection.isOpen)
        XCTAssertEqual(connection.lines(containing: "idle for 3000 ms (idle_timeout_ms)").count, 1, "\(connection.log.all)")
    }

    func testIdleTimeoutZeroKeepsAQuietConnection() throws {
        let connection = try Connection(store: store, limits: limits(frame: 1000, idle: 0))
        try connection.hello()
        connection.advance(milliseconds: 3_600_000)
        XCTAssertTrue(connection.isOpen)
        XCTAssertEqual(connection.timedOut, 0)
    }

    // MARK: Output budget

    func testAPeerThatDoesNotReadIsNoLongerReadAndThenClosed() throws {
        let peer = UnreadPeer()
        let connection = try Connection(store: store, limits: limits(frame: 1000, output: 200), unreadPeer: peer)
        try connection.send(.hello(protocolVersion: 1, instance: "default", client: "t"))  // its answer is held too
        var burst = ByteBuffer()
        for id in UInt32(10)..<30 { Request(requestID: id, body: .latestKey(keyID: 1)).encode(into: &burst) }
        try connection.channel.writeInbound(burst)
        // 48 bytes an answer: after five the budget of 200 is spent and the rest waits undecoded.
        XCTAssertLessThan(connection.broker.requestsServed, 10)
        connection.advance(milliseconds: 900)
        XCTAssertTrue(connection.isOpen)
        connection.advance(milliseconds: 400)
        XCTAssertFalse(connection.isOpen)
        XCTAssertEqual(connection.lines(containing: "has not read its answers for 1000 ms").count, 1, "\(connection.log.all)")
    }

    func testAPausedConnectionGoesOnWhenThePeerReads() throws {
        let peer = UnreadPeer()
        let connection = try Connection(store: store, limits: limits(frame: 1000, output: 200), unreadPeer: peer)
        var burst = ByteBuffer()
        Request(requestID: 1, body: .hello(protocolVersion: 1, instance: "default", client: "t")).encode(into: &burst)
        for id in UInt32(10)..<30 { Request(requestID: id, body: .getKey(keyID: 1 + id % 4, version: 1)).encode(into: &burst) }
        try connection.channel.writeInbound(burst)
        let served = connection.broker.requestsServed
        XCTAssertLessThan(served, 21)
        let context = try connection.channel.pipeline.syncOperations.context(handler: peer)
        peer.release(context: context)
        connection.channel.embeddedEventLoop.run()
        XCTAssertEqual(connection.broker.requestsServed, 21, "every buffered request was decoded once the peer read")
        let answers = try connection.answers()
        XCTAssertEqual(answers.map(\.requestID), [1] + Array(10..<30))
        XCTAssertTrue(answers.allSatisfy { $0.status == .ok })
        connection.advance(milliseconds: 5000)
        XCTAssertTrue(connection.isOpen)
    }

    func testAnAnswerThePeerNeverTakesDoesNotHoldTheCloseForMoreThanTheFrameTimeout() throws {
        let peer = UnreadPeer()
        let connection = try Connection(store: store, limits: limits(frame: 1000), unreadPeer: peer)
        try connection.send(.latestKey(keyID: 1))  // before HELLO: BAD_REQUEST, then close once written
        XCTAssertTrue(connection.isOpen, "waits for the answer to be written")
        connection.advance(milliseconds: 1300)
        XCTAssertFalse(connection.isOpen)
    }

    // MARK: Session

    func testTheFirstRequestMustBeHelloAndASecondHelloCloses() throws {
        let first = try Connection(store: store, limits: limits())
        try first.send(.status)
        let refusal = try XCTUnwrap(try first.answers().first)
        XCTAssertEqual(refusal.status, .badRequest)
        XCTAssertEqual(refusal.body, .failure(message: "the first request on a connection must be HELLO"))
        XCTAssertFalse(first.isOpen)

        let second = try Connection(store: store, limits: limits())
        try second.hello()
        try second.send(.hello(protocolVersion: 1, instance: "default", client: "again"))
        XCTAssertEqual(try second.answers().first?.status, .badRequest)
        XCTAssertFalse(second.isOpen)
    }

    func testHelloForAnUnknownInstanceOrProtocolIsRefused() throws {
        let unknown = try Connection(store: store, limits: limits())
        try unknown.send(.hello(protocolVersion: 1, instance: "nope\u{1B}[31m", client: "t"))
        let denied = try XCTUnwrap(try unknown.answers().first)
        XCTAssertEqual(denied.status, .denied)
        XCTAssertFalse(unknown.isOpen)
        XCTAssertFalse(unknown.log.all.contains { $0.contains("\u{1B}") }, "peer text is escaped before it is logged")

        let newer = try Connection(store: store, limits: limits())
        try newer.send(.hello(protocolVersion: 2, instance: "default", client: "t"))
        XCTAssertEqual(try newer.answers().first?.status, .unsupported)
        XCTAssertFalse(newer.isOpen)
    }

    func testKeyBytesAreZeroedOnceTheSocketHasTakenThem() throws {
        let connection = try Connection(store: store, limits: limits())
        try connection.hello()
        try connection.send(.latestKey(keyID: 3))
        guard case let .latestKey(_, key) = try XCTUnwrap(try connection.answers().first).body else { return XCTFail("no key") }
        XCTAssertTrue(key.readableBytesView.contains { $0 != 0 })
        let written = try XCTUnwrap(connection.socket.originals.last)
        XCTAssertTrue(written.readableBytesView.allSatisfy { $0 == 0 }, "the answer's buffer still holds the key")
    }

    func testStatusIsTheTypedDocument() throws {
        let connection = try Connection(store: store, limits: limits())
        try connection.hello()
        try connection.send(.status)
        guard case let .status(json) = try XCTUnwrap(try connection.answers().first).body else { return XCTFail("no STATUS") }
        let document = try StatusDocument(json: json)
        XCTAssertEqual(document.instance, "default")
        XCTAssertEqual(document.instance(named: "default")?.keys.map(\.keyID), [1, 2, 3, 4])
        XCTAssertEqual(document.connections, 1)
    }

    func testAdminCommandsNeedAnAdminAndWrongOnesKeepTheConnection() throws {
        let client = try Connection(store: store, limits: limits(), admin: false)
        try client.hello()
        try client.send(.admin(.unlock(tokenCode: "123456")))
        XCTAssertEqual(try client.answers().first?.status, .denied)
        XCTAssertTrue(client.isOpen)

        let admin = try Connection(store: store, limits: limits())
        try admin.hello()
        var payload = ByteBuffer()
        payload.writeInteger(Opcode.admin.rawValue)
        payload.writeInteger(UInt32(99))
        payload.writeProtocolString("frobnicate now")
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(payload.readableBytes))
        frame.writeBuffer(&payload)
        try admin.channel.writeInbound(frame)
        let answer = try XCTUnwrap(try admin.answers().first)
        XCTAssertEqual(answer.requestID, 99)
        XCTAssertEqual(answer.status, .badRequest)
        XCTAssertTrue(admin.isOpen)
        XCTAssertEqual(admin.broker.counters.malformed.load(ordering: .relaxed), 0, "a sound frame is not malformed")
    }

    func testAMalformedFrameIsAnsweredAndCloses() throws {
        let connection = try Connection(store: store, limits: limits())
        try connection.hello()
        try connection.sendBytes([0, 0, 0, 6, 0x02, 0, 0, 0, 5, 0xFF])  // LATEST_KEY with a 1-byte body
        let answer = try XCTUnwrap(try connection.answers().first)
        XCTAssertEqual(answer.requestID, 5)
        XCTAssertEqual(answer.status, .badRequest)
        XCTAssertFalse(connection.isOpen)
        XCTAssertEqual(connection.broker.counters.malformed.load(ordering: .relaxed), 1)
    }
}
