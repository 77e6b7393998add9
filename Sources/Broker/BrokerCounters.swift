import Synchronization

/// Daemon-wide counters for STATUS, updated lock-free from every event loop.
final class BrokerCounters: Sendable {
    let connections = Atomic<Int>(0)
    let connectionsTotal = Atomic<Int>(0)
    let requests = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let denied = Atomic<Int>(0)
    let malformed = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    let rejectedConnections = Atomic<Int>(0)
    let timedOut = Atomic<Int>(0)
    /// New versions written by scheduled rotation (rotate_after), and those adopted from another broker.
    let scheduledRotations = Atomic<Int>(0)
    let adoptedRotations = Atomic<Int>(0)
}
