/// Guards against peers that hold resources without using them.
public struct Limits: Sendable, Equatable {
    public var maxConnections = 1024
    /// Connections of one uid; so that one user, even a listed one, cannot fill max_connections.
    public var maxConnectionsPerUID = 256
    /// Connections of one uid that have not finished HELLO yet: the only ones a peer can hold
    /// without being authorised for an instance.
    public var maxUnauthenticatedPerUID = 128
    public var maxInFlightPerConnection = 64
    /// Answers written but not yet taken by the peer, per connection; beyond it the broker stops
    /// reading that connection until the peer reads.
    public var maxOutputBytesPerConnection = 128 * 1024
    /// A frame started but not finished within this time, or no HELLO within it after connecting,
    /// closes the connection; so does a peer that leaves its answers unread this long. Shutdown
    /// waits at most this long for answers in flight.
    public var frameTimeoutMilliseconds = 10_000
    /// A connection with no request for this long is closed; 0 keeps idle connections (the
    /// MariaDB plugin holds one open and uses it rarely once its cache is warm).
    public var idleTimeoutMilliseconds = 0
    /// At most one log line per peer uid and kind of event (denied, refused, timed out,
    /// malformed) per interval; the next line counts the ones left out.
    public var peerLogIntervalMilliseconds = 10_000
    /// How often the users and groups of clients and admins are looked up again (also on SIGHUP).
    public var accessRefreshMilliseconds = 10_000

    public init() {}
}
