import ArgumentParser
import AWSKMS
import Broker
import BrokerConfiguration
import CKeybrokerSystem
import CKeybrokerSystemd
import Glibc
import KeyStore
import Logging
import ServiceLifecycle

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
            throw ExitCode(1)
        }
    }

    struct StartupError: Error {
        var message: String
    }

    private func serve(hardeningError: Int32) async throws {
        let settings: BrokerConfig
        do {
            settings = try BrokerConfig.load(path: config)
        } catch {
            throw StartupError(message: error.description)
        }
        let useJournal = CKB_stderr_is_journal() == 1
        let level = Self.loggerLevel(settings.logLevel)
        LoggingSystem.bootstrap { _ in DaemonLogHandler(level: level, useJournal: useJournal) }
        let logger = Logger(label: "keybrokerd")
        if hardeningError != 0 {
            logger.warning("cannot make the process non-dumpable: \(String(cString: strerror(-hardeningError)))")
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
            throw StartupError(message: error.description)
        }
        let broker = try await Self.makeBroker(settings, logger: logger)
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
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server), .init(service: warmUp),
                       .init(service: notifier)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "keybrokerd.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() })))
        do {
            try await group.run()
        } catch let error as BrokerServer.Failure {
            throw StartupError(message: error.description)
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
        }
    }

    /// Everything the configuration names, checked before the socket is opened: users and groups,
    /// master keys, the state directory and the key files already in it.
    static func makeBroker(_ settings: BrokerConfig, logger: Logger) async throws -> BrokerContext {
        let file = settings.file
        do {
            let admins = try AccessList.resolve(settings.admins, file: file, key: "admins")
            var clients: [String: AccessList] = [:]
            var stores: [String: InstanceKeyStore] = [:]
            try prepareStateDirectory(settings.stateDirectory, file: file)
            for instance in settings.instances {
                clients[instance.name] = try AccessList.resolve(instance.clients, file: file, key: "instances.\(instance.name).clients")
                let provider = try await instance.makeProvider(configFile: file, environment: Self.environment(), logger: logger)
                let store = InstanceKeyStore(name: instance.name, provider: provider,
                                             directory: "\(settings.stateDirectory)/\(instance.name)",
                                             keyLength: instance.keySpec.byteCount, autoCreate: instance.autoCreate && provider.canCreateKeys,
                                             logger: logger)
                do {
                    try store.open()
                } catch {
                    throw StartupError(message: "instance \"\(instance.name)\": \(error.description)")
                }
                stores[instance.name] = store
            }
            for instance in settings.instances {
                guard let store = stores[instance.name] else { continue }
                let summary = store.summary()
                let detail = (store.provider as? AWSKMSProvider).map { " (\($0.summary))" } ?? ""
                logger.info("instance \"\(instance.name)\": provider \(store.provider.name)\(detail), \(instance.keySpec.rawValue), \(summary.keyIDs) keys (\(summary.versions) versions) in \(store.directory.path)")
            }
            return BrokerContext(instances: stores, clients: clients, admins: admins, limits: settings.limits, logger: logger)
        } catch let error as ConfigError {
            throw StartupError(message: error.description)
        }
    }

    static func prepareStateDirectory(_ path: String, file: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw StartupError(message: "\(file): state_dir: cannot create \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw StartupError(message: "\(file): state_dir: \(path) is not a directory")
        }
        if info.st_mode & 0o077 != 0 {
            throw StartupError(message: "\(file): state_dir: \(path) is open to group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run: chmod 700 \(path)")
        }
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
                    group.addTask {
                        await store.provider.prepare()
                        await store.warmUp(concurrency: instance.prefetchConcurrency)
                    }
                }
            }
        }
        try? await gracefulShutdown()
    }
}
