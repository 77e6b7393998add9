import Logging
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// Looks the users and groups of `admins` and `clients` up again every `access_refresh_ms` and on
/// SIGHUP (`systemctl reload keybroker`), so a change to /etc/group (or LDAP) takes effect without
/// a restart. When something changed, every open connection checks its peer again and closes if
/// the peer may no longer use its instance (or, before HELLO, any instance).
public struct AccessRefreshService: Service {
    let broker: BrokerContext
    let interval: Duration
    let logger: Logger

    public init(broker: BrokerContext, interval: Duration, logger: Logger) {
        self.broker = broker
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in hangups {
                        logger.info("SIGHUP: looking up the users and groups of clients and admins again")
                        await refresh()
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        if Task.isCancelled { break }
                        await refresh()
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Name-service lookups block (NSS may ask LDAP): they run on NIO's blocking-I/O pool, never on
    /// an event loop or the task pool.
    private func refresh() async {
        let access = broker.access
        let result = try? await NIOThreadPool.singleton.runIfActive { access.refresh() }
        guard let (change, failures) = result else { return }
        for failure in failures {
            logger.warning("\(failure)")
        }
        if let change {
            logger.notice("access lists changed: \(change)")
            for channel in broker.registry.channels {
                channel.pipeline.fireUserInboundEventTriggered(AccessPolicy.Changed())
            }
        }
    }
}
