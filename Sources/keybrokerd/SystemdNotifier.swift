import Broker
import CKeybrokerSystemd
import Logging
import ServiceLifecycle

/// Keeps systemd informed: a readable STATUS= line, and WATCHDOG=1 only while the request path
/// works (every event loop answers, the task pool runs this service, the key stores answer their
/// lock). A wedged daemon stops pinging and systemd restarts it.
struct SystemdNotifier: Service {
    let broker: BrokerContext
    let server: BrokerServer
    let logger: Logger

    func run() async throws {
        let watchdogMicroseconds = CKB_watchdog_usec()
        let interval: Duration = watchdogMicroseconds > 0 ? .microseconds(Int64(watchdogMicroseconds / 2)) : .seconds(10)
        var lastStatus = ""
        var wasHealthy = true
        while !server.isListening && !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let status = statusLine()
            if status != lastStatus {
                _ = CKB_notify("STATUS=\(status)")
                lastStatus = status
            }
            if watchdogMicroseconds > 0 {
                let healthy = await server.eventLoopsRespond(within: interval / 2)
                if healthy {
                    _ = CKB_notify("WATCHDOG=1")
                } else if wasHealthy {
                    logger.error("the request path is not answering; not pinging the systemd watchdog")
                }
                wasHealthy = healthy
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: min(interval, .seconds(10))) }
        }
    }

    func statusLine() -> String {
        var keys = 0
        var failed = 0
        var lastError: String?
        for store in broker.instances.values {
            let summary = store.summary()
            keys += summary.loaded
            failed += summary.failedLoads
            lastError = summary.lastError ?? lastError
        }
        var line = "\(broker.instances.count) instance\(broker.instances.count == 1 ? "" : "s"), \(keys) keys loaded, \(broker.requestsServed) requests"
        if failed > 0 { line += ", \(failed) failed loads" }
        if let lastError { line += "; last error: \(lastError)" }
        if let reloadError = broker.reloads.lastError { line += "; reload failed: \(reloadError); serving the previous configuration" }
        return line
    }
}
