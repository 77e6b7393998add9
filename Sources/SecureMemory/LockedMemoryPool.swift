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
        public var pages: Int
        public var slotsInUse: Int
        /// Pages whose mlock failed (RLIMIT_MEMLOCK too small): still private and excluded from core
        /// dumps, but the kernel may swap them.
        public var unlockedPages: Int
        public var lastLockError: Int32
    }

    /// Addresses as integers: raw pointers are not Sendable, and the pool owns the pages for good.
    private struct State {
        var freeSlots: [UInt] = []
        var pages: [UInt] = []
        var slotsInUse = 0
        var unlockedPages = 0
        var lastLockError: Int32 = 0
    }

    private let state = Mutex(State())
    private let pageSize = CKB_page_size()

    private init() {}

    public var statistics: Statistics {
        state.withLock { Statistics(pages: $0.pages.count, slotsInUse: $0.slotsInUse, unlockedPages: $0.unlockedPages, lastLockError: $0.lastLockError) }
    }

    /// A zeroed slot of `slotSize` bytes, or nil when the system is out of memory.
    func allocateSlot() -> UnsafeMutableRawPointer? {
        state.withLock { state in
            if state.freeSlots.isEmpty {
                var locked: Int32 = 0
                guard let page = CKB_locked_pages_alloc(pageSize, &locked) else { return nil }
                if locked != 1 {
                    state.unlockedPages += 1
                    state.lastLockError = locked
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
        var locked: Int32 = 0
        guard let pages = CKB_locked_pages_alloc(size, &locked) else { return nil }
        if locked != 1 {
            state.withLock {
                $0.unlockedPages += 1
                $0.lastLockError = locked
            }
        }
        return (pages, size)
    }

    func releaseLarge(_ pointer: UnsafeMutableRawPointer, size: Int) {
        CKB_locked_pages_free(pointer, size)
    }
}
