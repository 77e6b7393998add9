import Logging
import NIOPosix
import ProviderSettings
import SecureMemory
import Synchronization

/// Request/response exchanges with the instance's KMIP servers over mutual TLS. OpenSSL's calls
/// block, so exchanges run on a small pool of dedicated threads (NIOThreadPool), never on an
/// event loop or Swift's cooperative pool. Connections are kept between exchanges (up to one per
/// thread) and the servers of `kmip_server` are tried in order, starting with the one that
/// answered last.
final class KMIPTransport: Sendable {
    let servers: [KMIPSettings.Server]
    let timeoutMilliseconds: Int
    private let context: TLSContext
    private let pool: NIOThreadPool
    private let logger: Logger
    private let idle = Mutex<[TLSConnection]>([])
    private let preferred = Mutex<Int>(0)
    private let maximumIdle: Int

    init(servers: [KMIPSettings.Server], context: TLSContext, threads: Int, timeoutMilliseconds: Int, logger: Logger) {
        self.servers = servers
        self.context = context
        self.timeoutMilliseconds = timeoutMilliseconds
        self.logger = logger
        maximumIdle = max(1, threads)
        pool = NIOThreadPool(numberOfThreads: max(1, threads))
        pool.start()
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Sends `request` and returns the whole response message. With `secret`, the caller's
    /// request bytes hold key material: they are zeroed by the caller, and nothing here copies them.
    func exchange(_ request: [UInt8]) async throws(KMIPError) -> [UInt8] {
        do {
            return try await pool.runIfActive { [self] in try exchangeBlocking(request) }
        } catch let error as KMIPError {
            throw error
        } catch is CancellationError {
            throw KMIPError(.cancelled, server: nil, message: "the request was cancelled: keybrokerd is stopping")
        } catch {
            throw KMIPError(.cancelled, server: nil, message: "the KMIP thread pool is shut down: keybrokerd is stopping")
        }
    }

    private func exchangeBlocking(_ request: [UInt8]) throws(KMIPError) -> [UInt8] {
        // A pooled connection the server closed while it sat idle fails on first use: such a
        // failure costs one more attempt on a fresh connection, not a retry with backoff.
        while let pooled = takeIdle() {
            do {
                let answer = try pooled.exchange(request, deadline: TLSConnection.now() + Int64(timeoutMilliseconds))
                giveBack(pooled)
                return answer
            } catch where error.isBrokenConnection {
                logger.debug("KMIP server \(pooled.server): a kept connection was closed (\(error.message)); opening a new one")
                continue
            }
        }
        let connection = try connect()
        let answer = try connection.exchange(request, deadline: TLSConnection.now() + Int64(timeoutMilliseconds))
        giveBack(connection)
        return answer
    }

    /// The server in use (the one that answered last), for messages about its answers.
    var currentServer: KMIPSettings.Server {
        servers[preferred.withLock { $0 }]
    }

    private func takeIdle() -> TLSConnection? {
        while let connection = idle.withLock({ $0.popLast() }) {
            if connection.isUsable { return connection }
        }
        return nil
    }

    private func giveBack(_ connection: TLSConnection) {
        idle.withLock { connections in
            if connections.count < maximumIdle { connections.append(connection) }
        }
    }

    /// The first server that completes a handshake, each given the whole timeout. A certificate
    /// problem is reported at once: trying the next server would hide it.
    private func connect() throws(KMIPError) -> TLSConnection {
        let start = preferred.withLock { $0 }
        var lastError: KMIPError?
        for step in 0..<servers.count {
            let index = (start + step) % servers.count
            let server = servers[index]
            do {
                let connection = try TLSConnection.open(context, to: server, deadline: TLSConnection.now() + Int64(timeoutMilliseconds))
                if index != start {
                    preferred.withLock { $0 = index }
                    logger.notice("KMIP server \(server) answers; using it (\(connection.negotiated))")
                } else {
                    logger.debug("connected to KMIP server \(server) (\(connection.negotiated))")
                }
                return connection
            } catch {
                switch error.kind {
                case .transport, .timeout:
                    if servers.count > 1 { logger.warning("\(error.description); trying the next server") }
                    lastError = error
                default:
                    throw error
                }
            }
        }
        throw lastError ?? KMIPError(.transport, server: nil, message: "no KMIP server is configured")
    }

}
