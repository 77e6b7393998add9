import BrokerProtocol
import SecureMemory
import SystemSupport

/// The broker's metrics in Prometheus's text format: what `keybrokerctl metrics` prints and
/// `metrics_listen` serves. Counters come from `MetricsRegistry` and `BrokerCounters`, gauges are
/// read now. Series are written in a fixed order, daemon-wide first and per instance last, so a
/// cut at `limit` (one ADMIN answer is one frame) loses the per-instance tail, said in a comment.
extension BrokerContext {
    public func metricsText(limit: Int = .max) -> String {
        let registry = MetricsRegistry.shared
        var out = MetricsText()
        out.family("keybroker_up", "gauge", "1 while keybrokerd serves; the info labels say which build.")
        out.sample("keybroker_up", [("server", Self.serverName)], 1)
        out.family("keybroker_uptime_seconds", "gauge", "Seconds since keybrokerd started.")
        out.sample("keybroker_uptime_seconds", [], Int((ContinuousClock.now - startedAt).components.seconds))

        out.family("keybroker_requests_total", "counter", "Answers by op and status.")
        for op in Opcode.allCases {
            for status in ResponseStatus.allCases {
                let count = registry.answers(op: op.rawValue, status: status.rawValue)
                if count > 0 { out.sample("keybroker_requests_total", [("op", Self.name(of: op)), ("status", status.description)], count) }
            }
        }
        out.family("keybroker_malformed_frames_total", "counter", "Frames that broke the protocol (the connection was closed).")
        out.sample("keybroker_malformed_frames_total", [], counters.malformed.load(ordering: .relaxed))

        let calls = registry.callSeries
        out.family("keybroker_aws_calls_total", "counter", "KMS, STS and S3 calls by operation and outcome (ok, the AWS error code, no_answer).")
        for (operation, series) in calls {
            let (service, name) = Self.split(operation)
            for (outcome, count) in series.outcomes.sorted(by: { $0.key < $1.key }) {
                out.sample("keybroker_aws_calls_total", [("service", service), ("operation", name), ("outcome", outcome)], count)
            }
        }
        out.family("keybroker_aws_call_duration_seconds", "histogram", "Time of one KMS, STS or S3 call (one attempt).")
        for (operation, series) in calls {
            let (service, name) = Self.split(operation)
            let labels = [("service", service), ("operation", name)]
            var cumulative = 0
            for (index, bound) in MetricsRegistry.latencyBuckets.enumerated() {
                cumulative += series.buckets[index]
                out.sample("keybroker_aws_call_duration_seconds_bucket", labels + [("le", MetricsText.number(bound))], cumulative)
            }
            out.sample("keybroker_aws_call_duration_seconds_bucket", labels + [("le", "+Inf")], series.count)
            out.sample("keybroker_aws_call_duration_seconds_sum", labels, series.sum)
            out.sample("keybroker_aws_call_duration_seconds_count", labels, series.count)
        }

        out.family("keybroker_connections", "gauge", "Open client connections.")
        out.sample("keybroker_connections", [], counters.connections.load(ordering: .relaxed))
        out.family("keybroker_connections_refused_total", "counter", "Connections refused at accept (not listed, or over a limit).")
        out.sample("keybroker_connections_refused_total", [], counters.rejectedConnections.load(ordering: .relaxed))
        let pool = LockedMemoryPool.shared.statistics
        out.family("keybroker_locked_memory_bytes", "gauge", "Memory locked for unwrapped keys (VmLck).")
        out.sample("keybroker_locked_memory_bytes", [], (pool.pages - pool.unlockedPages) * pool.pageSize)
        out.family("keybroker_locked_memory_unlocked_pages", "gauge", "Key pages mlock refused (keys in them may be swapped out).")
        out.sample("keybroker_locked_memory_unlocked_pages", [], pool.unlockedPages)
        let reloadCounts = reloads.counts
        out.family("keybroker_reloads_total", "counter", "Configuration reloads (SIGHUP) by outcome.")
        out.sample("keybroker_reloads_total", [("outcome", "applied")], reloadCounts.succeeded)
        out.sample("keybroker_reloads_total", [("outcome", "failed")], reloadCounts.failed)
        out.family("keybroker_reload_failed", "gauge", "1 while the last reload was refused (the previous configuration is served).")
        out.sample("keybroker_reload_failed", [], reloads.lastError == nil ? 0 : 1)
        out.family("keybroker_rotations_total", "counter", "New key versions by scheduled rotation: written here, or adopted from another broker.")
        out.sample("keybroker_rotations_total", [("kind", "scheduled")], counters.scheduledRotations.load(ordering: .relaxed))
        out.sample("keybroker_rotations_total", [("kind", "adopted")], counters.adoptedRotations.load(ordering: .relaxed))

        let table = instances.sorted { $0.key < $1.key }
        var perInstance = MetricsText()
        perInstance.family("keybroker_keys", "gauge", "Key ids of the instance.")
        perInstance.family("keybroker_key_versions", "gauge", "Stored key versions of the instance.")
        perInstance.family("keybroker_keys_loaded", "gauge", "Unwrapped key versions in locked memory.")
        perInstance.family("keybroker_key_load_failures_total", "counter", "Key versions that could not be unwrapped.")
        perInstance.family("keybroker_next_rotation_timestamp_seconds", "gauge", "When the next key falls due for scheduled rotation.")
        for (name, store) in table {
            let summary = store.summary()
            // Not "instance": Prometheus gives every scraped series its own instance label (the target).
            let labels = [("broker_instance", name), ("provider", store.provider.name)]
            perInstance.sample("keybroker_keys", labels, summary.keyIDs)
            perInstance.sample("keybroker_key_versions", labels, summary.versions)
            perInstance.sample("keybroker_keys_loaded", labels, summary.loaded)
            perInstance.sample("keybroker_key_load_failures_total", labels, summary.failedLoads)
            if let due = store.nextRotationDue { perInstance.sample("keybroker_next_rotation_timestamp_seconds", labels, Double(due) / 1000) }
        }
        var text = out.text + perInstance.text
        if text.utf8.count > limit {
            let note = "# truncated at \(limit) bytes: scrape metrics_listen for every series\n"
            var cut = text.utf8.prefix(max(0, limit - note.utf8.count))
            while let last = cut.last, last != UInt8(ascii: "\n") { cut = cut.dropLast() }
            text = String(decoding: cut, as: UTF8.self) + note
        }
        return text
    }

    static func name(of op: Opcode) -> String {
        switch op {
        case .hello: "HELLO"
        case .latestKey: "LATEST_KEY"
        case .getKey: "GET_KEY"
        case .rotate: "ROTATE"
        case .status: "STATUS"
        case .admin: "ADMIN"
        case .info: "INFO"
        }
    }

    /// "KMS Decrypt" → ("kms", "Decrypt").
    static func split(_ operation: String) -> (String, String) {
        guard let space = operation.firstIndex(of: " ") else { return ("aws", operation) }
        return (operation[..<space].lowercased(), String(operation[operation.index(after: space)...]))
    }
}
