import Broker
import KeyStore
import Logging
import ServiceLifecycle

/// Looks in each shared store every `store_refresh_ms` for versions other brokers created, so
/// LATEST_KEY here moves on within that bound (a GET_KEY for an unknown version does not wait:
/// it looks in the store at once). Instances are read from the broker at each tick, so a reload
/// that adds or changes a store takes effect at once. A failed look is logged when it starts
/// failing and when it works again, and never stops the service.
struct StoreRefreshService: Service {
    let broker: BrokerContext
    let logger: Logger
    /// How often the table of stores is walked; each store is refreshed at its own interval.
    static let tick = Duration.milliseconds(50)
    static let warmUpConcurrency = 16

    func run() async throws {
        let memory: (lastRefresh: [ObjectIdentifier: ContinuousClock.Instant], failing: Set<ObjectIdentifier>) = ([:], [])
        await repeatUntilShutdown(memory: memory, pause: { Self.tick }) { memory in
            var seen = Set<ObjectIdentifier>()
            for store in broker.instances.values {
                guard let shared = store.files as? any SharedKeyFileStore else { continue }
                let id = ObjectIdentifier(store)
                seen.insert(id)
                // The first look is the start-up scan itself.
                let last = memory.lastRefresh[id] ?? ContinuousClock.now
                memory.lastRefresh[id] = last
                guard ContinuousClock.now - last >= .milliseconds(shared.refreshMilliseconds) else { continue }
                memory.lastRefresh[id] = ContinuousClock.now
                await refresh(store, failing: &memory.failing)
            }
            memory.lastRefresh = memory.lastRefresh.filter { seen.contains($0.key) }
            memory.failing = memory.failing.intersection(seen)
        }
    }

    private func refresh(_ store: InstanceKeyStore, failing: inout Set<ObjectIdentifier>) async {
        let id = ObjectIdentifier(store)
        var logger = logger
        logger[metadataKey: "instance"] = "\(store.name)"
        do {
            let added = try await store.refreshFromStore()
            if failing.remove(id) != nil {
                logger.notice("\(store.files.location) answers again")
            }
            if added > 0 {
                logger.info("\(added) new version(s) from \(store.files.location)", metadata: ["event": "store_refreshed"])
                // Fetched into the cache and unwrapped now, so they are served when S3 is down later.
                await store.warmUp(concurrency: Self.warmUpConcurrency)
            }
        } catch {
            if failing.insert(id).inserted {
                logger.warning("cannot look for new versions: \(error.description); cached keys are still served")
            }
        }
    }
}
