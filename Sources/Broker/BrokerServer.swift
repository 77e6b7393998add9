import BrokerProtocol
import Glibc
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

    public init(broker: BrokerContext, target: ListenTarget, logger: Logger, threads: Int = System.coreCount,
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
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(broker: broker))
                }
            }
        let serverChannel: any Channel
        switch target {
        case let .inheritedDescriptor(fd):
            do {
                serverChannel = try await bootstrap.withBoundSocket(fd).get()
            } catch {
                throw Failure(description: "Failed to listen on the socket passed by systemd (fd \(fd)): \(error)")
            }
            logger.info("listening on the socket passed by systemd (fd \(fd))")
        case let .path(path):
            // Bound under a temporary name, given its mode, then renamed into place: a client never
            // finds the socket with the process umask's mode, and the name appears only when ready.
            let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
            let temporary = "\(directory)/.keybrokerd-\(getpid()).sock"
            unlink(temporary)
            do {
                serverChannel = try await bootstrap.bind(unixDomainSocketPath: temporary).get()
            } catch {
                throw Failure(description: "Failed to listen on \(path): \(error)")
            }
            guard chmod(temporary, 0o660) == 0, rename(temporary, path) == 0 else {
                let reason = errnoText(errno)
                try? await serverChannel.close()
                unlink(temporary)
                throw Failure(description: "Failed to put the socket in place at \(path) with mode 0660: \(reason)")
            }
            logger.info("listening on \(path)")
        }
        listening.store(true, ordering: .releasing)
        onListening()

        try? await gracefulShutdown()
        onShutdown()

        logger.info("shutting down: no new connections; waiting for \(broker.requestsInFlight) requests in flight")
        try? await serverChannel.close()
        // Long enough for a KMS call with its retries; the process exits right after.
        let deadline = ContinuousClock.now + .seconds(30)
        while broker.requestsInFlight > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        let open = broker.connections.withLock { Array($0.values) }
        for channel in open {
            try? await channel.close()
        }
        if case let .path(path) = target {
            unlink(path)
        }
        try? await group.shutdownGracefully()
    }
}
