import BrokerProtocol
import Glibc
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The socket server as a long-running service: listens, serves until graceful shutdown, then
/// stops accepting, lets requests in flight finish, and closes every connection.
public final class BrokerServer: Service {
    private let broker: BrokerContext
    private let target: ListenTarget
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private let onListening: @Sendable () -> Void

    public init(broker: BrokerContext, target: ListenTarget, logger: Logger, threads: Int = System.coreCount,
                onListening: @escaping @Sendable () -> Void = {}) {
        self.broker = broker
        self.target = target
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.logger = logger
        self.onListening = onListening
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
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
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
            do {
                serverChannel = try await bootstrap.bind(unixDomainSocketPath: path).get()
            } catch {
                throw Failure(description: "Failed to listen on \(path): \(error)")
            }
            guard chmod(path, 0o660) == 0 else {
                let reason = String(cString: strerror(errno))
                try? await serverChannel.close()
                throw Failure(description: "Failed to set mode 0660 on \(path): \(reason)")
            }
            logger.info("listening on \(path)")
        }
        onListening()

        try? await gracefulShutdown()

        logger.info("shutting down: no new connections; waiting for \(broker.requestsInFlight) requests in flight")
        try? await serverChannel.close()
        let deadline = ContinuousClock.now + .seconds(10)
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
