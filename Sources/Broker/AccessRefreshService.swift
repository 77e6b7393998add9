import Logging
import NIOPosix
import ServiceLifecycle

/// Looks the users and groups of `admins` and `clients` up again every `access_refresh_ms` (and
/// after each reload, which keybrokerd's SIGHUP handler makes), so a change to /etc/group (or
/// LDAP) takes effect without a restart. When something changed, every open connection checks its
/// peer again and closes if the peer may no longer use its instance (or, before HELLO, any instance).
public struct AccessRefreshService: Service {
    let broker: BrokerContext
    let logger: Logger

    public init(broker: BrokerContext, logger: Logger) {
        self.broker = broker
        self.logger = logger
    }

    public func run() async throws {
        // Read each time: a reload may change access_refresh_ms.
        await repeatUntilShutdown(pausingFirst: true, pause: { [broker] in .milliseconds(broker.limits.accessRefreshMilliseconds) }) {
            await refresh()
        }
    }

    /// Name-service lookups block (NSS may ask LDAP): they run on NIO's blocking-I/O pool, never on
    /// an event loop or the task pool.
    public func refresh() async {
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
