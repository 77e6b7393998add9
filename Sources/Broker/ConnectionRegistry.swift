import NIOCore
import Synchronization

/// What each uid holds, so admission is decided at accept, before a channel exists: at most
/// `max_connections` in all, `max_connections_per_uid` for one uid, and of those at most
/// `max_unauthenticated_per_uid` that have not finished HELLO. Connections that have not proved
/// anything can then never keep out a peer that has; one uid can only crowd out itself. Also the
/// open channels, so shutdown can close them.
final class ConnectionRegistry: Sendable {
    enum Refusal: Sendable {
        case total(Int)
        case perUID(Int)
        case unauthenticated(Int)
    }

    private struct State {
        var total = 0
        var perUID: [UInt32: Int] = [:]
        var unauthenticated: [UInt32: Int] = [:]
        var channels: [ObjectIdentifier: any Channel] = [:]
        var maximum: Int
        var maximumPerUID: Int
        var maximumUnauthenticated: Int
    }

    private let state: Mutex<State>

    init(maximum: Int, maximumPerUID: Int, maximumUnauthenticated: Int) {
        state = Mutex(State(maximum: maximum, maximumPerUID: maximumPerUID, maximumUnauthenticated: maximumUnauthenticated))
    }

    /// New maximums (a reload): they judge the next connections; none that is open is closed.
    func setMaximums(total: Int, perUID: Int, unauthenticated: Int) {
        state.withLock { state in
            state.maximum = total
            state.maximumPerUID = perUID
            state.maximumUnauthenticated = unauthenticated
        }
    }

    /// Counts a new connection of `uid` as unauthenticated, or says which limit refuses it.
    func admit(uid: UInt32) -> Refusal? {
        state.withLock { state in
            if state.total >= state.maximum { return .total(state.maximum) }
            if state.perUID[uid, default: 0] >= state.maximumPerUID { return .perUID(state.maximumPerUID) }
            if state.unauthenticated[uid, default: 0] >= state.maximumUnauthenticated { return .unauthenticated(state.maximumUnauthenticated) }
            state.total += 1
            state.perUID[uid, default: 0] += 1
            state.unauthenticated[uid, default: 0] += 1
            return nil
        }
    }

    /// The connection finished HELLO: it no longer uses the unauthenticated budget.
    func authenticated(uid: UInt32) {
        state.withLock { Self.decrement(&$0.unauthenticated, uid) }
    }

    /// Gives back what `admit` counted.
    func release(uid: UInt32, authenticated: Bool) {
        state.withLock { state in
            state.total -= 1
            Self.decrement(&state.perUID, uid)
            if !authenticated { Self.decrement(&state.unauthenticated, uid) }
        }
    }

    func attach(_ channel: any Channel) {
        state.withLock { $0.channels[ObjectIdentifier(channel)] = channel }
    }

    func detach(_ channel: any Channel) {
        _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    var channels: [any Channel] {
        state.withLock { Array($0.channels.values) }
    }

    private static func decrement(_ counts: inout [UInt32: Int], _ uid: UInt32) {
        guard let count = counts[uid] else { return }
        counts[uid] = count > 1 ? count - 1 : nil
    }
}

/// One admitted connection's share of the registry, given back exactly once: when its channel
/// goes inactive, or when the channel could not be set up at all.
final class Admission: Sendable {
    let uid: UInt32
    private let registry: ConnectionRegistry
    private let released = Atomic<Bool>(false)
    private let isAuthenticated = Atomic<Bool>(false)

    init(uid: UInt32, registry: ConnectionRegistry) {
        self.uid = uid
        self.registry = registry
    }

    func authenticated() {
        guard !isAuthenticated.exchange(true, ordering: .relaxed) else { return }
        registry.authenticated(uid: uid)
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        registry.release(uid: uid, authenticated: isAuthenticated.load(ordering: .relaxed))
    }
}
