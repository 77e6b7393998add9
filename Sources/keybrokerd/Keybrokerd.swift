import ArgumentParser
import Broker
import BrokerConfiguration
import BrokerPolicy
import CKeybrokerSystem
import CKeybrokerSystemd
import Glibc
import KeyStore
import Logging
import ServiceLifecycle
import SystemSupport

@main
struct Keybrokerd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keybrokerd",
        abstract: "Serves MariaDB data keys over a Unix socket; master keys stay in the KMS.",
        version: BrokerContext.serverName)

    @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "path"))
    var config: String = BrokerConfig.defaultPath

    @Flag(name: .long, help: "Check the configuration and the master keys, then exit.")
    var check = false

    func run() async throws {
        umask(0o077)
        let hardening = CKB_harden_process()
        do {
            try await serve(hardeningError: hardening)
        } catch let error as StartupError {
            writeToStandardError("keybrokerd: \(error.message)\n")
            _ = CKB_notify("STATUS=failed to start: \(error.message)")
            throw ExitCode(error.exitStatus)
        }
    }

    private func serve(hardeningError: Int32) async throws {
        let settings: BrokerConfig
        do {
            settings = try BrokerConfig.load(path: config)
        } catch {
            throw StartupError(error)
        }
        let useJournal = CKB_stderr_is_journal() == 1
        LogLevelSwitch.shared.level = Self.loggerLevel(settings.logLevel)
        LoggingSystem.bootstrap { _ in DaemonLogHandler(useJournal: useJournal) }
        let logger = Logger(label: "keybrokerd")
        if hardeningError != 0 {
            logger.warning("cannot make the process non-dumpable: \(errnoText(-hardeningError))")
        }
        let openFiles = CKB_raise_open_files_limit()
        if openFiles > 0 && openFiles < settings.limits.maxConnections + 64 {
            logger.warning("the open-files limit (\(openFiles)) is below max_connections (\(settings.limits.maxConnections)) + 64; raise LimitNOFILE=")
        }

        let target: ListenTarget
        do {
            target = try ListenTarget.fromEnvironment(fallbackPath: settings.socketPath)
            if case let .path(path) = target, !check { try ListenTarget.prepareToBind(path) }
        } catch {
            throw StartupError(error)
        }
        let broker = try await Self.makeBroker(settings, logger: logger, takeLock: !check)
        broker.memoryReport.checkAtStart()
        if check {
            print("\(settings.file): configuration OK (\(settings.instances.count) instance\(settings.instances.count == 1 ? "" : "s"))")
            return
        }
        let instanceNames = settings.instances.map(\.name).joined(separator: ", ")
        let server = BrokerServer(broker: broker, target: target, logger: logger, onListening: {
            logger.info("ready: instances \(instanceNames)", metadata: ["event": "started"])
            _ = CKB_notify("READY=1\nSTATUS=serving instances \(instanceNames)")
        }, onShutdown: {
            _ = CKB_notify("STOPPING=1")
            logger.info("stopping: finishing requests in flight", metadata: ["event": "stopping"])
        })
        let warmUp = WarmUpService(broker: broker, settings: settings)
        let notifier = SystemdNotifier(broker: broker, server: server, logger: logger)
        let accessRefresh = AccessRefreshService(broker: broker, logger: logger)
        let reloader = ConfigReloader(broker: broker, initial: settings, accessRefresh: accessRefresh, logger: logger)
        let rotation = ScheduledRotationService(broker: broker, logger: logger)
        var optional: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let address = settings.metricsListen {
            optional.append(.init(service: MetricsHTTPServer(broker: broker, host: address.host, port: address.port, logger: logger)))
        }
        let storeRefresh = StoreRefreshService(broker: broker, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server), .init(service: warmUp),
                       .init(service: notifier), .init(service: accessRefresh), .init(service: reloader),
                       .init(service: rotation), .init(service: storeRefresh)] + optional,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "keybrokerd.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() })))
        do {
            try await group.run()
        } catch let error as BrokerServer.Failure {
            throw StartupError(error.description)
        } catch let error as MetricsHTTPServer.Failure {
            throw StartupError(error.description)
        }
        broker.releaseKeys()
        logger.info("stopped; \(broker.requestsServed) requests served, keys zeroed")
    }

    static func loggerLevel(_ level: BrokerConfig.LogLevel) -> Logger.Level {
        switch level {
        case .error: .error
        case .warning: .warning
        case .info: .info
        case .debug: .debug
        case .trace: .trace
        }
    }

    /// Everything the configuration names, checked before the socket is opened: users and groups,
    /// master keys, the state directory (locked for this daemon alone unless `takeLock` is off, as
    /// for --check beside a running daemon) and the key files already in it.
    static func makeBroker(_ settings: BrokerConfig, logger: Logger, takeLock: Bool) async throws(StartupError) -> BrokerContext {
        let assembly = BrokerAssembly(settings, logger: logger)
        let access = try assembly.resolveAccess()
        try assembly.stores.prepare()
        if takeLock {
            do {
                try StateDirectoryLock.acquire(stateDirectory: settings.stateDirectory)
            } catch {
                throw StartupError("\(settings.file): state_dir: \(error)")
            }
        }
        var instances: [String: InstanceKeyStore] = [:]
        for instance in settings.instances {
            instances[instance.name] = try await assembly.openStore(for: instance)
        }
        for instance in settings.instances {
            guard let store = instances[instance.name] else { continue }
            assembly.describe(store, instance)
        }
        return BrokerContext(instances: instances, access: AccessPolicy(rules: access.rules, admins: access.admins, clients: access.clients),
                             limits: settings.limits, logger: logger)
    }

    static func environment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let index = text.firstIndex(of: "=") {
                result[String(text[..<index])] = String(text[text.index(after: index)...])
            }
            entry += 1
        }
        return result
    }
}
