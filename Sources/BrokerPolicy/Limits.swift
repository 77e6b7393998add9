/// Guards against peers that hold resources without using them.
public struct Limits: Sendable, Equatable {
    public var maxConnections = 1024
    public var maxInFlightPerConnection = 64
    /// A frame started but not finished within this time, or no HELLO within it after connecting,
    /// closes the connection.
    public var frameTimeoutMilliseconds = 10_000
    /// A connection with no request for this long is closed; 0 keeps idle connections (the
    /// MariaDB plugin holds one open and uses it rarely once its cache is warm).
    public var idleTimeoutMilliseconds = 0

    public init() {}
}
