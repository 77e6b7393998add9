import Broker
import BrokerConfiguration
import BrokerPolicy
import KeyStore
import Logging

/// What start-up and a reload build from a checked configuration: the resolved access lists and
/// each instance's open key store. Nothing here touches a running broker.
struct BrokerAssembly {
    let settings: BrokerConfig
    let providers: ProviderFactory
    let stores: StoreFactory
    let logger: Logger

    init(_ settings: BrokerConfig, logger: Logger) {
        self.settings = settings
        self.providers = ProviderFactory(configFile: settings.file, environment: Keybrokerd.environment(), logger: logger)
        self.stores = StoreFactory(configFile: settings.file, stateDirectory: settings.stateDirectory,
                                   environment: Keybrokerd.environment(), logger: logger)
        self.logger = logger
    }

    struct Access {
        var rules: AccessPolicy.Rules
        var admins: AccessList
        var clients: [String: AccessList]
    }

    /// Every user and group name looked up; an unknown one is a configuration error.
    func resolveAccess() throws(StartupError) -> Access {
        let file = settings.file
        var clients: [String: AccessList] = [:]
        do {
            let admins = try AccessList.resolve(settings.admins, file: file, key: "admins")
            for instance in settings.instances {
                clients[instance.name] = try AccessList.resolve(instance.clients, file: file, key: "instances.\(instance.name).clients")
            }
            let rules = AccessPolicy.Rules(admins: settings.admins,
                                           clients: Dictionary(uniqueKeysWithValues: settings.instances.map { ($0.name, $0.clients) }))
            return Access(rules: rules, admins: admins, clients: clients)
        } catch {
            throw StartupError(error)
        }
    }

    /// The instance's provider (master key read, region resolved) and its store, opened: the key
    /// files already there are indexed, none is decrypted yet.
    func openStore(for instance: InstanceConfig) async throws(StartupError) -> InstanceKeyStore {
        let provider = try await providers.makeProvider(for: instance)
        let files = try await stores.makeStore(for: instance, provider: provider)
        let store = InstanceKeyStore(name: instance.name, provider: provider, files: files,
                                     keyLength: instance.keySpec.byteCount, autoCreate: instance.autoCreate && provider.canCreateKeys,
                                     logger: logger)
        do {
            try await store.open()
        } catch {
            throw StartupError("instance \"\(instance.name)\": \(error.description)")
        }
        store.rotateAfterSeconds = instance.rotateAfterSeconds
        return store
    }

    func describe(_ store: InstanceKeyStore, _ instance: InstanceConfig) {
        let summary = store.summary()
        let detail = (store.provider as? any StatusReportingProvider).map { " (\($0.summary))" } ?? ""
        logger.info("instance \"\(instance.name)\": provider \(store.provider.name)\(detail), \(instance.keySpec.rawValue), \(summary.keyIDs) keys (\(summary.versions) versions) in \(store.files.location)")
    }

    /// The start-up check of the provider (two-factor start waits here), then every stored key unwrapped.
    static func warmUp(_ store: InstanceKeyStore, _ instance: InstanceConfig) async {
        await (store.provider as? any StartupCheckingProvider)?.prepare()
        await store.warmUp(concurrency: instance.prefetchConcurrency)
    }
}

extension InstanceConfig {
    /// Whether a store built for `other` serves the same keys the same way: then a reload keeps
    /// the running store (and its unwrapped keys) and only the access lists change.
    func servesSameKeys(as other: InstanceConfig) -> Bool {
        provider == other.provider && keySpec == other.keySpec && autoCreate == other.autoCreate
            && prefetchConcurrency == other.prefetchConcurrency && store == other.store
    }
}
