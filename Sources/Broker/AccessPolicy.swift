import BrokerPolicy
import Synchronization

/// Who may use what: the principals of `admins` and of each instance's `clients`, resolved to uids
/// and gids. The resolved lists are replaced whole by `refresh`, so a peer is always judged by one
/// consistent set.
public final class AccessPolicy: Sendable {
    public struct Rules: Sendable {
        public var admins: [Principal]
        public var clients: [String: [Principal]]

        public init(admins: [Principal], clients: [String: [Principal]]) {
            self.admins = admins
            self.clients = clients
        }
    }

    struct Snapshot: Sendable, Equatable {
        var admins: AccessList
        var clients: [String: AccessList]
        /// Everyone in any list: a peer outside it is closed as soon as it connects.
        var anyone: AccessList

        init(admins: AccessList, clients: [String: AccessList]) {
            self.admins = admins
            self.clients = clients
            var anyone = admins
            for list in clients.values { anyone.formUnion(list) }
            self.anyone = anyone
        }
    }

    private let currentRules: Mutex<Rules>
    public var rules: Rules { currentRules.withLock { $0 } }
    /// The generation counts replacements, so a refresh that started before a reload does not
    /// put back the lists the reload replaced.
    private let current: Mutex<(snapshot: Snapshot, generation: Int)>
    /// What the last refresh could not resolve, so the same problem is logged once, not every time.
    private let lastFailures = Mutex<[String]>([])

    /// `admins` and `clients` as resolved at start-up (AccessList.resolve, which refuses unknown names).
    public init(rules: Rules, admins: AccessList, clients: [String: AccessList]) {
        self.currentRules = Mutex(rules)
        self.current = Mutex((Snapshot(admins: admins, clients: clients), 0))
    }

    /// A reload: the configuration's new lists, already resolved (AccessList.resolve). Returns
    /// what changed, as `refresh` does.
    func replace(rules: Rules, admins: AccessList, clients: [String: AccessList]) -> Change? {
        let new = Snapshot(admins: admins, clients: clients)
        currentRules.withLock { $0 = rules }
        let old = current.withLock { state in
            defer { state = (new, state.generation + 1) }
            return state.snapshot
        }
        return Self.change(from: old, to: new)
    }

    var snapshot: Snapshot { current.withLock { $0.snapshot } }

    func isListedAnywhere(uid: UInt32, gid: UInt32) -> Bool {
        current.withLock { $0.snapshot.anyone.contains(uid: uid, gid: gid) }
    }

    /// Sent through every connection's pipeline after a refresh changed something.
    struct Changed: Sendable {}

    public struct Change: Sendable, CustomStringConvertible {
        public var lines: [String]
        public var description: String { lines.joined(separator: "; ") }
    }

    /// Looks every name up again (this blocks on the name service: call it off the event loops).
    /// Returns what changed (nil when nothing did) and the problems found, when they differ from
    /// the last refresh's. A list whose lookup failed keeps its entries.
    public func refresh() -> (change: Change?, failures: [String]) {
        var failures: [String] = []
        func resolve(_ principals: [Principal], _ previous: AccessList?, _ name: String) -> AccessList {
            guard let (list, missing) = AccessList.refresh(principals) else {
                failures.append("cannot look up \(name) now; keeping the users and groups resolved before")
                return previous ?? AccessList()
            }
            if !missing.isEmpty { failures.append("\(name): \(missing.joined(separator: ", ")) no longer exist and grant nothing") }
            return list
        }
        let (old, generation) = current.withLock { ($0.snapshot, $0.generation) }
        let rules = self.rules
        let admins = resolve(rules.admins, old.admins, "admins")
        var clients: [String: AccessList] = [:]
        for (instance, principals) in rules.clients {
            clients[instance] = resolve(principals, old.clients[instance], "clients of [instances.\(instance)]")
        }
        let new = Snapshot(admins: admins, clients: clients)
        let newFailures = lastFailures.withLock { last -> [String] in
            defer { last = failures }
            return last == failures ? [] : failures
        }
        guard new != old else { return (nil, newFailures) }
        let applied = current.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            state.snapshot = new
            return true
        }
        guard applied else { return (nil, newFailures) }
        return (Self.change(from: old, to: new), newFailures)
    }

    private static func change(from old: Snapshot, to new: Snapshot) -> Change? {
        guard new != old else { return nil }
        var lines: [String] = []
        if new.admins != old.admins { lines.append("admins: \(Self.difference(old.admins, new.admins))") }
        for instance in Set(new.clients.keys).union(old.clients.keys).sorted() where new.clients[instance] != old.clients[instance] {
            lines.append("clients of [instances.\(instance)]: \(Self.difference(old.clients[instance] ?? AccessList(), new.clients[instance] ?? AccessList()))")
        }
        return Change(lines: lines)
    }

    private static func difference(_ old: AccessList, _ new: AccessList) -> String {
        var parts: [String] = []
        parts += new.uids.subtracting(old.uids).sorted().map { "+uid \($0)" }
        parts += old.uids.subtracting(new.uids).sorted().map { "-uid \($0)" }
        parts += new.gids.subtracting(old.gids).sorted().map { "+gid \($0)" }
        parts += old.gids.subtracting(new.gids).sorted().map { "-gid \($0)" }
        return parts.joined(separator: " ")
    }
}
