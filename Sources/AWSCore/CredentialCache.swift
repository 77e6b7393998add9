import Logging
import SystemSupport

/// The current credentials of one instance, refreshed from the chain before they expire.
/// Concurrent callers share one refresh. When a refresh fails while the old credentials are still
/// valid, the old ones are used (and the failure logged), so a short metadata outage is invisible.
public actor CredentialCache {
    /// Refresh this long before the expiration...
    public static let refreshMargin: Int64 = 300
    /// ...but not more often than this, for credentials issued with a very short life.
    public static let minimumRefreshInterval: Int64 = 30

    private let resolve: @Sendable () async throws(AWSError) -> AWSCredentials
    private let logger: Logger
    private var current: (credentials: AWSCredentials, fetchedAt: Int64)?
    private var refreshing: Task<Result<AWSCredentials, AWSError>, Never>?
    private var lastSource: String?

    public init(logger: Logger, resolve: @escaping @Sendable () async throws(AWSError) -> AWSCredentials) {
        self.resolve = resolve
        self.logger = logger
    }

    public func get() async throws(AWSError) -> AWSCredentials {
        let now = unixNow()
        if let current {
            let due = current.credentials.expires(within: Self.refreshMargin, now: now) && now - current.fetchedAt >= Self.minimumRefreshInterval
            let expired = current.credentials.expires(within: 0, now: now)
            if !due && !expired { return current.credentials }
        }
        let task: Task<Result<AWSCredentials, AWSError>, Never>
        if let refreshing {
            task = refreshing
        } else {
            let resolve = resolve
            task = Task { () -> Result<AWSCredentials, AWSError> in
                do throws(AWSError) { return .success(try await resolve()) } catch { return .failure(error) }
            }
            refreshing = task
        }
        let result = await task.value
        if refreshing == task { refreshing = nil }
        switch result {
        case let .success(credentials):
            if current?.credentials.accessKeyID != credentials.accessKeyID || current == nil {
                let expiry = credentials.expiration.map { ", valid until \(Self.format($0))" } ?? ""
                if lastSource != credentials.source || current == nil {
                    logger.info("AWS credentials from \(credentials.source) (access key \(credentials.redactedAccessKeyID)\(expiry))")
                } else {
                    logger.debug("AWS credentials refreshed from \(credentials.source)\(expiry)")
                }
                lastSource = credentials.source
            }
            current = (credentials, unixNow())
            return credentials
        case let .failure(error):
            if let current, !current.credentials.expires(within: 0, now: unixNow()) {
                logger.warning("cannot refresh AWS credentials (still using the current ones until they expire): \(error.description)")
                return current.credentials
            }
            throw error
        }
    }

    /// Forgets the current credentials (AWS said they expired): the next call fetches new ones.
    public func invalidate() {
        current = nil
    }

    public static func format(_ time: Int64) -> String {
        CivilTime(unix: time).iso8601
    }
}
