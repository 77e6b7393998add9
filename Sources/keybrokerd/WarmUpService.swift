import Broker
import BrokerConfiguration
import KeyStore
import ServiceLifecycle

/// Unwraps every stored key at start-up, with bounded concurrency per instance, then stays until
/// shutdown: ServiceGroup treats a service that returns early during a graceful shutdown as a
/// failure, and a warm-up cut short by SIGTERM is not one.
struct WarmUpService: Service {
    let broker: BrokerContext
    let settings: BrokerConfig

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                for instance in settings.instances {
                    guard let store = broker.instances[instance.name] else { continue }
                    group.addTask { await BrokerAssembly.warmUp(store, instance) }
                }
            }
        }
        try? await gracefulShutdown()
    }
}
