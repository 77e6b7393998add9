import BrokerProtocol
import CKeybrokerSystem
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import SystemSupport

/// The socket server as a long-running service: listens, serves until graceful shutdown, then
/// stops accepting, lets requests in flight finish, and closes every connection.
public final class BrokerServer: Service {
    private let broker: BrokerContext
    private let target: ListenTarget
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private let onListening: @Sendable () -> Void
    private let onShutdown: @Sendable () -> Void
    private let listening = Atomic<Bool>(false)

    /// True once the socket accepts connections (systemd's READY=1 is sent then).
    public var isListening: Bool { listening.load(ordering: .acquiring) }

    /// Event loops for client connections: half the cores, at least one. An answer from memory
    /// costs a few microseconds of CPU, so one loop serves tens of thousands of requests a second
    /// (work that waits, file reads and KMS calls, runs in tasks, off the loops). The clients are
    /// mariadbd's threads on the same machine: fewer loops than cores leave them room, and a busy
    /// loop finds several connections ready per wake-up instead of sleeping after each (bench on 2
    /// cores, one loop against two: pipelined 0.74× against 0.61× of the C floor, one request in
    /// flight per client 0.81× against 0.79×; medians of 7, on a loaded machine).
    public static var defaultEventLoops: Int { max(1, System.coreCount / 2) }

    public init(broker: BrokerContext, target: ListenTarget, logger: Logger, threads: Int = BrokerServer.defaultEventLoops,
                onListening: @escaping @Sendable () -> Void = {}, onShutdown: @escaping @Sendable () -> Void = {}) {
        self.broker = broker
        self.target = target
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.logger = logger
        self.onListening = onListening
        self.onShutdown = onShutdown
    }

    /// Proves the request path is alive: every event loop runs a task within `deadline`.
    public func eventLoopsRespond(within deadline: Duration) async -> Bool {
        let loops = Array(group.makeIterator())
        return await withTaskGroup(of: Bool.self) { tasks in
            for loop in loops {
                tasks.addTask {
                    await withTaskGroup(of: Bool.self) { race in
                        race.addTask { (try? await loop.submit { true }.get()) ?? false }
                        race.addTask {
                            try? await Task.sleep(for: deadline)
                            return false
                        }
                        let first = await race.next() ?? false
                        race.cancelAll()
                        return first
                    }
                }
            }
            return await tasks.allSatisfy { $0 }
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public func run() async throws {
        let broker = broker
        let listener: CInt
        switch target {
        case let .inheritedDescriptor(fd):
            listener = fd
            logger.info("listening on the socket passed by systemd (fd \(fd))")
        case let .path(path):
            // The socket's mode is set on the descriptor before bind gives it its name: no one can
            // find it with another mode, and nothing is changed by path afterwards.
            let fd = CKB_unix_bind(path, 0o660)
            guard fd >= 0 else {
                throw Failure(description: "Failed to listen on \(path): \(errnoText(-fd))")
            }
            // A deep queue: connections of peers in no list are closed as fast as they arrive,
            // bursts of listed ones wait here rather than fail.
            guard listen(fd, 4096) == 0 else {
                let reason = errnoText(errno)
                close(fd)
                unlink(path)
                throw Failure(description: "Failed to listen on \(path): \(reason)")
            }
            listener = fd
            logger.info("listening on \(path)")
        }
        let acceptor: AcceptLoop
        do {
            acceptor = try AcceptLoop(listener: listener, broker: broker, group: group)
        } catch {
            throw Failure(description: "Failed to listen: \(error)")
        }
        acceptor.start()
        let flushInterval = TimeAmount.milliseconds(Int64(broker.limits.peerLogIntervalMilliseconds))
        let flusher = group.next().scheduleRepeatedTask(initialDelay: flushInterval, delay: flushInterval) { _ in
            broker.peerLog.flush()
            broker.memoryReport.check()
        }
        listening.store(true, ordering: .releasing)
        onListening()

        try? await gracefulShutdown()
        onShutdown()

        logger.info("shutting down: no new connections; waiting for \(broker.requestsInFlight) requests in flight")
        await acceptor.stop()
        // Whatever clients do (a client that does not read keeps its answers in flight), shutdown
        // takes at most frame_timeout_ms.
        let deadline = ContinuousClock.now + .milliseconds(broker.limits.frameTimeoutMilliseconds)
        while broker.requestsInFlight > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if broker.requestsInFlight > 0 {
            logger.warning("stopping with \(broker.requestsInFlight) answers not taken by their clients after \(broker.limits.frameTimeoutMilliseconds) ms (frame_timeout_ms)")
        }
        flusher.cancel()
        broker.peerLog.flush()
        for channel in broker.registry.channels {
            try? await channel.close()
        }
        if case let .path(path) = target {
            unlink(path)
        }
        try? await group.shutdownGracefully()
    }
}
