import CKeybrokerCrypto
import CKeybrokerSystem
import Synchronization

/// Hands out small slots from pages that are locked in RAM (mlock), excluded from core dumps and
/// wiped on fork. One page holds many keys, so 10,000 cached keys lock about 0.6 MiB rather than
/// 10,000 pages. Slots are zeroed when they are given back.
public final class LockedMemoryPool: Sendable {
    public static let shared = LockedMemoryPool()

    public static let slotSize = 64

    public struct Statistics: Sendable, Equatable {
        /// Pages holding secrets: the pool's own and those of large secrets still alive.
        public var pages: Int
        public var slotsInUse: Int
        /// Of `pages`, those whose mlock failed (RLIMIT_MEMLOCK too small): still private and
        /// excluded from core dumps, but the kernel may swap them. `pages - unlockedPages` is what
        /// the kernel reports as VmLck.
        public var unlockedPages: Int
        /// errno of the last failed mlock, 0 when none failed.
        public var lastLockError: Int32
        public var pageSize: Int
    }

    /// Addresses as integers: raw pointers are not Sendable, and the pool owns the pages for good.
    private struct State {
        var freeSlots: [UInt] = []
        var pages: [UInt] = []
        var slotsInUse = 0
        var unlockedPages = 0
        var lastLockError: Int32 = 0
        /// Large secrets' allocations: address → (pages, whether locked).
        var large: [UInt: (pages: Int, locked: Bool)] = [:]
    }

    private let state = Mutex(State())
    private let pageSize = CKB_page_size()

    private init() {}

    public var statistics: Statistics {
        state.withLock { state in
            let large = state.large.values
            return Statistics(pages: state.pages.count + large.reduce(0) { $0 + $1.pages },
                              slotsInUse: state.slotsInUse,
                              unlockedPages: state.unlockedPages + large.reduce(0) { $0 + ($1.locked ? 0 : $1.pages) },
                              lastLockError: state.lastLockError, pageSize: pageSize)
        }
    }

    /// Makes sure the pool has a page, so whether mlock works is known (and can be reported) before
    /// the first key arrives.
    public func prepare() {
        guard let slot = allocateSlot() else { return }
        releaseSlot(slot)
    }

    /// A zeroed slot of `slotSize` bytes, or nil when the system is out of memory.
    func allocateSlot() -> UnsafeMutableRawPointer? {
        state.withLock { state in
            if state.freeSlots.isEmpty {
                var lockError: Int32 = 0
                guard let page = CKB_locked_pages_alloc(pageSize, &lockError) else { return nil }
                if lockError != 0 {
                    state.unlockedPages += 1
                    state.lastLockError = lockError
                }
                let base = UInt(bitPattern: page)
                state.pages.append(base)
                let slots = pageSize / Self.slotSize
                for index in stride(from: slots - 1, through: 0, by: -1) {
                    state.freeSlots.append(base + UInt(index * Self.slotSize))
                }
            }
            state.slotsInUse += 1
            return UnsafeMutableRawPointer(bitPattern: state.freeSlots.removeLast())
        }
    }

    func releaseSlot(_ slot: UnsafeMutableRawPointer) {
        CKB_cleanse(slot, Self.slotSize)
        let address = UInt(bitPattern: slot)
        state.withLock { state in
            state.slotsInUse -= 1
            state.freeSlots.append(address)
        }
    }

    /// Dedicated locked pages for a secret larger than a slot.
    func allocateLarge(byteCount: Int) -> (UnsafeMutableRawPointer, Int)? {
        let size = (byteCount + pageSize - 1) / pageSize * pageSize
        var lockError: Int32 = 0
        guard let pages = CKB_locked_pages_alloc(size, &lockError) else { return nil }
        state.withLock { state in
            state.large[UInt(bitPattern: pages)] = (size / pageSize, lockError == 0)
            if lockError != 0 { state.lastLockError = lockError }
        }
        return (pages, size)
    }

    func releaseLarge(_ pointer: UnsafeMutableRawPointer, size: Int) {
        _ = state.withLock { $0.large.removeValue(forKey: UInt(bitPattern: pointer)) }
        CKB_locked_pages_free(pointer, size)
    }
}
