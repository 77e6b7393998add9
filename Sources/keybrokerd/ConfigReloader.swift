import Broker
import BrokerConfiguration
import CKeybrokerSystemd
import KeyStore
import Logging
import ServiceLifecycle
import UnixSignals

/// SIGHUP (`systemctl reload keybroker`): the configuration is read and checked again, as at
/// start-up, and applied only when all of it checks: instances added (their keys unwrapped in the
/// background), removed (their keys zeroed, their connections closed) or changed (a new store;
/// connections move to it between requests), clients, admins, limits and the log level. No
/// connection and no request in flight is dropped for it. A configuration that does not check
/// changes nothing: the error goes to the log, to systemd's STATUS= and to STATUS (keybrokerctl
/// status). `socket` and `state_dir` need a restart; a reload that changes them says so.
struct ConfigReloader: Service {
    let broker: BrokerContext
    let initial: BrokerConfig
    let accessRefresh: AccessRefreshService
    let logger: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            var current = initial
            for await _ in hangups {
                _ = CKB_notify("RELOADING=1")
                logger.info("SIGHUP: reading \(current.file) again")
                do throws(StartupError) {
                    current = try await reload(from: current)
                    broker.reloads.succeeded()
                    _ = CKB_notify("READY=1")
                } catch {
                    broker.reloads.failed(error.message)
                    logger.error("reload failed, still serving the configuration loaded before: \(error.message)", metadata: ["event": "reload_failed"])
                    _ = CKB_notify("READY=1\nSTATUS=reload failed: \(error.message); serving the previous configuration")
                    // The running lists are still looked up again: a user deleted since (which
                    // makes the new file fail to check) must not keep the access it had.
                    await accessRefresh.refresh()
                }
            }
        }
    }

    /// Returns the configuration now in force.
    private func reload(from old: BrokerConfig) async throws(StartupError) -> BrokerConfig {
        let new: BrokerConfig
        do {
            new = try BrokerConfig.load(path: old.file)
        } catch {
            throw StartupError(error)
        }
        let assembly = BrokerAssembly(new, logger: logger)
        let access = try assembly.resolveAccess()
        let running = broker.instances
        var stores: [String: InstanceKeyStore] = [:]
        var built: [(InstanceKeyStore, InstanceConfig)] = []
        var added: [String] = [], changed: [String] = []
        do throws(StartupError) {
            for instance in new.instances {
                if let before = old.instance(named: instance.name), instance.servesSameKeys(as: before), let store = running[instance.name] {
                    stores[instance.name] = store
                    store.rotateAfterSeconds = instance.rotateAfterSeconds
                    continue
                }
                let store = try await assembly.openStore(for: instance)
                built.append((store, instance))
                stores[instance.name] = store
                if old.instance(named: instance.name) == nil { added.append(instance.name) } else { changed.append(instance.name) }
            }
        } catch {
            for (store, _) in built { store.releaseKeys() }
            throw error
        }
        let (retired, accessChange) = broker.reconfigure(instances: stores, rules: access.rules, admins: access.admins,
                                                         clients: access.clients, limits: new.limits)
        LogLevelSwitch.shared.level = Keybrokerd.loggerLevel(new.logLevel)
        let removed = old.instances.map(\.name).filter { new.instance(named: $0) == nil }
        for store in retired {
            let count = store.summary().loaded
            store.releaseKeys()
            let what = removed.contains(store.name) ? "removed" : "replaced"
            logger.notice("instance \"\(store.name)\" \(what): \(count) unwrapped keys zeroed", metadata: ["event": "instance_retired"])
        }
        for (store, instance) in built {
            assembly.describe(store, instance)
            Task { await BrokerAssembly.warmUp(store, instance) }
        }
        var parts: [String] = []
        if !added.isEmpty { parts.append("added \(added.joined(separator: ", "))") }
        if !removed.isEmpty { parts.append("removed \(removed.joined(separator: ", "))") }
        if !changed.isEmpty { parts.append("changed \(changed.joined(separator: ", "))") }
        if let accessChange { parts.append("access: \(accessChange)") }
        for instance in new.instances {
            guard let before = old.instance(named: instance.name), before.rotateAfterSeconds != instance.rotateAfterSeconds else { continue }
            parts.append("rotate_after of \(instance.name): \(instance.rotateAfterSeconds.map { RotationPeriod.text($0) } ?? "off")")
        }
        if new.limits != old.limits { parts.append("limits changed") }
        if new.logLevel != old.logLevel { parts.append("log_level \(new.logLevel.rawValue)") }
        logger.notice("reloaded \(new.file): \(parts.isEmpty ? "nothing changed" : parts.joined(separator: "; "))", metadata: ["event": "reloaded"])
        let metrics = (old.metricsListen.map { "\($0)" } ?? "(off)", new.metricsListen.map { "\($0)" } ?? "(off)")
        for (setting, before, after) in [("socket", old.socketPath, new.socketPath), ("state_dir", old.stateDirectory, new.stateDirectory),
                                         ("metrics_listen", metrics.0, metrics.1)] where before != after {
            logger.warning("\(setting) changed from \(before) to \(after): that takes a restart (systemctl restart keybroker); still using \(before)")
        }
        // What is in force: the new lists and limits, with the socket and state directory of the start.
        var inForce = new
        inForce.socketPath = old.socketPath
        inForce.stateDirectory = old.stateDirectory
        inForce.metricsListen = old.metricsListen
        return inForce
    }
}
