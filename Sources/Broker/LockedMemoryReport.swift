import CKeybrokerSystem
import Glibc
import SystemSupport
import Logging
import SecureMemory
import Synchronization

/// Says when key memory is not locked (mlock failed, usually RLIMIT_MEMLOCK): at start, and again
/// whenever more pages end up unlocked (checked every peer_log_interval_ms), with the limit to
/// raise. STATUS shows the same counts, and `pages - unlocked_pages` is the kernel's VmLck.
public final class LockedMemoryReport: Sendable {
    private let logger: Logger
    private let reportedUnlockedPages = Mutex(0)

    init(logger: Logger) {
        self.logger = logger
    }

    /// Makes sure the pool has a page, so a failing mlock is known before the first key.
    public func checkAtStart() {
        LockedMemoryPool.shared.prepare()
        check()
    }

    func check() {
        let pool = LockedMemoryPool.shared.statistics
        let isNew = reportedUnlockedPages.withLock { reported in
            defer { reported = max(reported, pool.unlockedPages) }
            return pool.unlockedPages > reported
        }
        guard isNew else { return }
        let limit = CKB_memlock_limit()
        let limitText = limit < 0 ? "unlimited" : "\(limit / 1024) KiB"
        logger.warning("key memory is not locked: mlock failed: \(errnoText(pool.lastLockError)) (errno \(pool.lastLockError)); \(pool.unlockedPages) of \(pool.pages) pages holding keys may be swapped to disk; RLIMIT_MEMLOCK is \(limitText): raise it (LimitMEMLOCK=64M in keybroker.service, or ulimit -l 65536)")
    }
}
