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

/// Holds every write, as a peer that does not read would: nothing reaches the socket until
/// `release()`, so the handler's output budget fills up.
final class UnreadPeer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var held: [(NIOAny, EventLoopPromise<Void>?)] = []
    var holding = true

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if holding { held.append((data, promise)) } else { context.write(data, promise: promise) }
    }

    func release(context: ChannelHandlerContext) {
        holding = false
        let writes = held
        held = []
        for (data, promise) in writes { context.write(data, promise: promise) }
        context.flush()
    }
}

/// Where the socket would be: copies what is written, as the kernel does, because the handler
/// zeroes each answer (key bytes) once it has been written. Keeps the originals to check that.
final class SocketCopy: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var originals: [ByteBuffer] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        originals.append(buffer)
        context.write(wrapOutboundOut(ByteBuffer(bytes: buffer.readableBytesView)), promise: promise)
    }
}

/// One connection on an EmbeddedChannel: the real ConnectionHandler, the real key store (local
/// provider), time moved by hand with `advanceTime`, answers read back through BrokerProtocol.
final class Connection {
    let channel = EmbeddedChannel()
    let broker: BrokerContext
    let log = CapturedLines()
    let socket = SocketCopy()
    private var nextID: UInt32 = 1
    private var decoder = FrameDecoder()
    private var received = ByteBuffer()

    /// `descriptor`: a socket the handler sends its answers on while NIO holds none of them (the
    /// daemon's path); -1 for answers through the channel only.
    private let descriptor: CInt
    /// The other end of the handler's socket, read as the client would.
    var peerEnd: CInt = -1

    init(store: InstanceKeyStore, limits: Limits, admin: Bool = true, unreadPeer: UnreadPeer? = nil, descriptor: CInt = -1) throws {
        self.descriptor = descriptor
        let me = AccessList(uids: [getuid()])
        let access = AccessPolicy(rules: .init(admins: [], clients: [:]), admins: admin ? me : AccessList(), clients: [store.name: me])
        let log = self.log
        broker = BrokerContext(instances: [store.name: store], access: access, limits: limits,
                               logger: Logger(label: "test", factory: { _ in log.handler() }))
        var peer = CKB_peer_credentials()
        peer.uid = getuid()
        peer.gid = getgid()
        peer.pid = 4242
        XCTAssertNil(broker.registry.admit(uid: peer.uid))
        let admission = Admission(uid: peer.uid, registry: broker.registry)
        try channel.pipeline.syncOperations.addHandler(socket)
        if let unreadPeer { try channel.pipeline.syncOperations.addHandler(unreadPeer) }
        try channel.pipeline.syncOperations.addHandler(ConnectionHandler(broker: broker, peer: peer, admission: admission, socket: descriptor))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/run/keybroker/test.sock")).wait()
    }

    var isOpen: Bool { channel.isActive }
    var timedOut: Int { broker.counters.timedOut.load(ordering: .relaxed) }

    func advance(milliseconds: Int64) {
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(milliseconds))
    }

    @discardableResult
    func send(_ body: Request.Body) throws -> UInt32 {
        let id = nextID
        nextID += 1
        var buffer = ByteBuffer()
        Request(requestID: id, body: body).encode(into: &buffer)
        try channel.writeInbound(buffer)
        return id
    }

    func sendBytes(_ bytes: [UInt8]) throws {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
    }

    /// Every answer written so far: what reached the socket, then what NIO holds.
    func answers() throws -> [Response] {
        readSocket()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { received.writeBuffer(&chunk) }
        var out: [Response] = []
        while let frame = decoder.next(from: &received) {
            guard case let .frame(payload) = frame else { XCTFail("bad frame from the broker"); break }
            out.append(try Response(payload: payload))
        }
        return out
    }

    /// The bytes `peerEnd` has received.
    private(set) var socketBytes = 0

    private func readSocket() {
        guard peerEnd >= 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while case let count = recv(peerEnd, &chunk, chunk.count, Int32(MSG_DONTWAIT)), count > 0 {
            received.writeBytes(chunk[0..<count])
            socketBytes += count
        }
    }

    func hello(instance: String = "default") throws {
        try send(.hello(protocolVersion: 1, instance: instance, client: "test"))
        let answer = try XCTUnwrap(try answers().first)
        XCTAssertEqual(answer.status, .ok, "\(answer.body)")
    }

    func lines(containing text: String) -> [String] { log.all.filter { $0.contains(text) } }
}

extension InstanceKeyStore {
    /// A local-provider store in `directory` with keys 1...4 in memory: answered on the event loop,
    /// with no task, so EmbeddedEventLoop runs everything.
    static func cachedForTests(in directory: String) async throws -> InstanceKeyStore {
        XCTAssertEqual(mkdir(directory, 0o700), 0)
        let provider = LocalProvider(masterKey: SecureBytes(copying: [UInt8](repeating: 3, count: 32)), instance: "default")
        let store = InstanceKeyStore(name: "default", provider: provider, directory: directory, keyLength: 32, autoCreate: true,
                                     logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await store.open()
        for id in UInt32(1)...4 { _ = try await store.latest(keyID: id) }
        return store
    }
}
