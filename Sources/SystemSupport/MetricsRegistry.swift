import Synchronization

/// The counters that are counted where things happen, in layers that know nothing of the server:
/// answers by op and status (lock-free: the cached path counts too), and AWS calls by operation
/// and outcome with a latency histogram. Gauges (keys, memory, connections) are read from their
/// owners when the metrics are written; see `BrokerContext.metricsText`.
public final class MetricsRegistry: @unchecked Sendable {
    public static let shared = MetricsRegistry()

    public static let opSlots = 16
    public static let statusSlots = 16
    // A fixed table of atomics, never freed (the registry lives as long as the process).
    private let answers: UnsafeMutablePointer<Atomic<Int>>

    /// Seconds; the upper bounds of Prometheus's default buckets that matter for KMS calls.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    public struct CallSeries: Sendable {
        /// Outcome ("ok", an AWS error code, "no_answer") → count.
        public var outcomes: [String: Int] = [:]
        /// Per bucket of `latencyBuckets`, not cumulative; the last slot is +Inf.
        public var buckets = [Int](repeating: 0, count: MetricsRegistry.latencyBuckets.count + 1)
        public var sum: Double = 0
        public var count = 0
    }
    private let calls = Mutex<[String: CallSeries]>([:])

    init() {
        let count = Self.opSlots * Self.statusSlots
        answers = .allocate(capacity: count)
        for index in 0..<count { (answers + index).initialize(to: Atomic<Int>(0)) }
    }

    public func countAnswer(op: UInt8, status: UInt8) {
        let index = Int(min(op, UInt8(Self.opSlots - 1))) * Self.statusSlots + Int(min(status, UInt8(Self.statusSlots - 1)))
        answers[index].add(1, ordering: .relaxed)
    }

    public func answers(op: UInt8, status: UInt8) -> Int {
        answers[Int(op) * Self.statusSlots + Int(status)].load(ordering: .relaxed)
    }

    /// `operation` as the log names it ("KMS Decrypt", "STS AssumeRole", "S3 PutObject").
    public func recordCall(operation: String, outcome: String, seconds: Double) {
        let bucket = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
        calls.withLock { calls in
            var series = calls[operation] ?? CallSeries()
            series.outcomes[outcome, default: 0] += 1
            series.buckets[bucket] += 1
            series.sum += seconds
            series.count += 1
            calls[operation] = series
        }
    }

    public var callSeries: [(operation: String, series: CallSeries)] {
        calls.withLock { $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }
}

/// Prometheus's text exposition format (version 0.0.4), the little of it keybroker writes.
public struct MetricsText {
    public private(set) var text = ""

    public init() {}

    public mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " \(Self.number(value))\n"
    }

    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Int) {
        sample(name, labels, Double(value))
    }

    static func escaped(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    public static func number(_ value: Double) -> String {
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
