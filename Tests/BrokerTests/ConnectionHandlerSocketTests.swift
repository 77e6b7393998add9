@testable import Broker
import BrokerPolicy
import BrokerProtocol
import Glibc
import KeyStore
import NIOCore
import TestSupport
import XCTest

/// The daemon's write path: the handler sends answers on its connection's socket itself while NIO
/// holds none of them, and hands NIO what the socket does not take. Here the socket is one end of
/// a real socketpair, read as the client would; the channel stands for NIO's queue.
final class ConnectionHandlerSocketTests: XCTestCase {
    private let temporary = TemporaryDirectory("connection-socket-test")
    private var store: InstanceKeyStore!
    private var ends: [CInt] = [-1, -1]

    override func setUp() async throws {
        store = try await .cachedForTests(in: "\(temporary.path)/default")
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends), 0)
    }

    override func tearDown() {
        for end in ends where end >= 0 { close(end) }
    }

    private func connection(output: Int = 128 * 1024, unreadPeer: UnreadPeer? = nil) throws -> Connection {
        var limits = Limits()
        limits.maxOutputBytesPerConnection = output
        let connection = try Connection(store: store, limits: limits, unreadPeer: unreadPeer, descriptor: ends[0])
        connection.peerEnd = ends[1]
        return connection
    }

    private func expectedKey(_ keyID: UInt32) async throws -> [UInt8] {
        let (_, key) = try await store.latest(keyID: keyID)
        return key.withUnsafeBytes { Array($0) }
    }

    func testAnswersGoToTheSocketWhileNIOHoldsNone() async throws {
        let connection = try connection()
        try connection.hello()
        let id = try connection.send(.getKey(keyID: 2, version: 1))
        XCTAssertNil(try connection.channel.readOutbound(as: ByteBuffer.self), "an answer went through NIO")
        let answers = try connection.answers()
        XCTAssertEqual(answers.map(\.requestID), [id])
        guard case let .getKey(key) = try XCTUnwrap(answers.first).body else { return XCTFail("\(answers)") }
        let expected = try await expectedKey(2)
        XCTAssertEqual(Array(key.readableBytesView), expected)
        XCTAssertGreaterThan(connection.socketBytes, 0)
    }

    func testWhatTheSocketDoesNotTakeGoesToNIOAndNothingIsLost() async throws {
        smallSendBuffer()
        let connection = try connection(output: 4 * 1024 * 1024)
        try connection.hello()
        // Every request in one read: their answers leave in one send, far more than the socket holds.
        let ids = UInt32(100)..<UInt32(5100)
        try connection.channel.writeInbound(burst(ids))
        let answers = try connection.answers()
        XCTAssertEqual(answers.map(\.requestID), Array(ids), "answers lost, doubled or out of order")
        XCTAssertGreaterThan(connection.socketBytes, 0, "nothing reached the socket")
        XCTAssertLessThan(connection.socketBytes, answers.count * 40, "everything fit the socket: NIO's part was not tested")
        for keyID in UInt32(1)...4 {
            let expected = try await expectedKey(keyID)
            for (id, answer) in zip(ids, answers) where 1 + id % 4 == keyID {
                guard case let .getKey(key) = answer.body, Array(key.readableBytesView) == expected else {
                    return XCTFail("answer \(id) is not key \(keyID): \(answer.body)")
                }
            }
        }
        // NIO has taken the rest: the next answer goes to the socket again.
        let id = try connection.send(.latestKey(keyID: 1))
        XCTAssertNil(try connection.channel.readOutbound(as: ByteBuffer.self))
        XCTAssertEqual(try connection.answers().map(\.requestID), [id])
    }

    private func smallSendBuffer() {
        var small: CInt = 4096
        XCTAssertEqual(setsockopt(ends[0], SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<CInt>.size)), 0)
    }

    private func burst(_ ids: Range<UInt32>) -> ByteBuffer {
        var requests = ByteBuffer()
        for id in ids { Request(requestID: id, body: .getKey(keyID: 1 + id % 4, version: 1)).encode(into: &requests) }
        return requests
    }

    func testNothingGoesPastNIOWhileItHoldsAnAnswer() throws {
        smallSendBuffer()
        let peer = UnreadPeer()
        let connection = try connection(output: 4 * 1024 * 1024, unreadPeer: peer)
        try connection.hello()
        let first = UInt32(100)..<UInt32(2100)
        try connection.channel.writeInbound(burst(first))
        var answers = try connection.answers()
        let reached = connection.socketBytes
        XCTAssertLessThan(answers.count, first.count, "everything fit the socket: NIO held nothing")
        // The socket has room again, but NIO still holds the rest of the burst.
        let last = try connection.send(.latestKey(keyID: 1))
        answers += try connection.answers()
        XCTAssertEqual(connection.socketBytes, reached, "an answer went past the ones NIO holds")
        peer.release(context: try connection.channel.pipeline.syncOperations.context(handler: peer))
        connection.channel.embeddedEventLoop.run()
        answers += try connection.answers()
        XCTAssertEqual(answers.map(\.requestID), Array(first) + [last], "answers lost, doubled or out of order")
    }

    func testAPausedConnectionWhoseAnswersTheSocketTookGoesOn() throws {
        // The budget is spent within one read, and the socket takes all of it at once: no write
        // is left in NIO whose completion would resume the connection.
        let connection = try connection(output: 4096)
        try connection.hello()
        let ids = UInt32(100)..<UInt32(1100)
        try connection.channel.writeInbound(burst(ids))
        connection.channel.embeddedEventLoop.run()
        XCTAssertEqual(try connection.answers().map(\.requestID), Array(ids), "buffered requests were left unanswered")
        XCTAssertTrue(connection.isOpen)
    }

    func testAPeerThatHasGoneClosesTheConnectionWithoutASignal() throws {
        let connection = try connection()
        try connection.hello()
        close(ends[1])
        ends[1] = -1
        connection.peerEnd = -1
        try connection.send(.latestKey(keyID: 1))
        XCTAssertFalse(connection.isOpen, "the connection stayed open after its peer went")
        XCTAssertNil(try connection.channel.readOutbound(as: ByteBuffer.self), "the answer was handed to NIO")
    }
}
