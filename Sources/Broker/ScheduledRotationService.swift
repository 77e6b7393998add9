import KeyStore
import Logging
import ServiceLifecycle
import SystemSupport

/// Scheduled rotation: every instance with `rotate_after` is checked at a quarter of its period
/// (at least every minute, at most four times a second) and its due keys rotated
/// (`InstanceKeyStore.rotateDueKeys`). Instances are read from the broker at each tick, so a
/// reload that adds, removes or changes a period takes effect within a quarter of a second.
public struct ScheduledRotationService: Service {
    let broker: BrokerContext
    let logger: Logger

    public init(broker: BrokerContext, logger: Logger) {
        self.broker = broker
        self.logger = logger
    }

    public func run() async throws {
        // Per store: when it was last checked, under which period. A quarter-second tick
        // only walks this table; a store is checked when its interval has passed, or at once
        // when it is new or a reload changed its period.
        let lastCheck: [ObjectIdentifier: (at: ContinuousClock.Instant, period: Int64)] = [:]
        await repeatUntilShutdown(memory: lastCheck, pause: { .milliseconds(250) }) { lastCheck in
            let instances = broker.instances
            var seen = Set<ObjectIdentifier>()
            for (name, store) in instances.sorted(by: { $0.key < $1.key }) {
                guard let period = store.rotateAfterSeconds else { continue }
                let id = ObjectIdentifier(store)
                seen.insert(id)
                if let last = lastCheck[id], last.period == period, ContinuousClock.now - last.at < Self.checkInterval(period: period) {
                    continue
                }
                lastCheck[id] = (ContinuousClock.now, period)
                let report = await store.rotateDueKeys(now: unixNowMilliseconds())
                record(report, instance: name, period: period)
            }
            lastCheck = lastCheck.filter { seen.contains($0.key) }
        }
    }

    static func checkInterval(period: Int64) -> Duration {
        let quarter = Duration.milliseconds(period * 250)
        return min(.seconds(60), max(.milliseconds(250), quarter))
    }

    private func record(_ report: InstanceKeyStore.ScheduledRotation, instance: String, period: Int64) {
        var logger = logger
        logger[metadataKey: "instance"] = "\(instance)"
        broker.counters.scheduledRotations.add(report.rotated.count, ordering: .relaxed)
        broker.counters.adoptedRotations.add(report.adopted.count, ordering: .relaxed)
        for ref in report.adopted {
            logger.info("key \(ref.keyID) version \(ref.version) was written by another broker sharing the store; serving it")
        }
        for failure in report.failed {
            logger.error("scheduled rotation of key \(failure.keyID) failed, retried at the next check: \(failure.error.message)",
                         metadata: ["key_id": "\(failure.keyID)", "event": "key_failed"])
        }
        guard !report.rotated.isEmpty || !report.failed.isEmpty else { return }
        let next = report.nextDue.map { CivilTime(unix: $0 / 1000).iso8601 } ?? "when a key exists"
        logger.notice("scheduled rotation (rotate_after \(RotationPeriod.text(period))): \(report.rotated.count) keys rotated\(report.failed.isEmpty ? "" : ", \(report.failed.count) failed"); next due \(next)")
    }
}

/// `rotate_after` written back the way a DBA writes it: 90d, 12h, 30m, 2s.
public enum RotationPeriod {
    public static func text(_ seconds: Int64) -> String {
        for (unit, size) in [("d", Int64(86400)), ("h", 3600), ("m", 60)] where seconds % size == 0 {
            return "\(seconds / size)\(unit)"
        }
        return "\(seconds)s"
    }
}
