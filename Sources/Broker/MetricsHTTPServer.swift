import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// `metrics_listen = "127.0.0.1:9464"`: the metrics over HTTP for a Prometheus scrape. Opt-in,
/// plain HTTP, no authentication: meant for loopback (or a network only the monitoring system
/// reaches). It holds no secret, only counts and instance names. GET /metrics (or /) answers the
/// text; anything else 404 or 405; at most 16 connections, each closed after one answer or 10 s.
public struct MetricsHTTPServer: Service {
    let broker: BrokerContext
    let host: String
    let port: Int
    let logger: Logger

    public init(broker: BrokerContext, host: String, port: Int, logger: Logger) {
        self.broker = broker
        self.host = host
        self.port = port
        self.logger = logger
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public func run() async throws {
        let open = Atomic<Int>(0)
        let broker = broker
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard open.wrappingAdd(1, ordering: .relaxed).newValue <= 16 else {
                    open.wrappingSubtract(1, ordering: .relaxed)
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in open.wrappingSubtract(1, ordering: .relaxed) }
                channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(broker: broker))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw Failure(description: "metrics_listen: cannot listen on \(host):\(port): \(error)")
        }
        logger.info("metrics on http://\(host):\(port)/metrics")
        await cancelWhenGracefulShutdown {
            try? await channel.closeFuture.get()
        }
        try? await channel.close()
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let broker: BrokerContext
    private var head: HTTPRequestHead?

    init(broker: BrokerContext) {
        self.broker = broker
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(request):
            head = request
        case .body:
            break
        case .end:
            guard let request = head else { return }
            head = nil
            let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
            let (status, body): (HTTPResponseStatus, String)
            if request.method != .GET && request.method != .HEAD {
                (status, body) = (.methodNotAllowed, "only GET\n")
            } else if path == "/metrics" || path == "/" {
                (status, body) = (.ok, broker.metricsText())
            } else {
                (status, body) = (.notFound, "the metrics are at /metrics\n")
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
            headers.add(name: "Content-Length", value: "\(body.utf8.count)")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
            if request.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
