import CKeybrokerSystem
import Glibc
import SystemSupport
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Accepts connections on a thread of its own and decides each one before a channel exists: the
/// peer's uid and gid (SO_PEERCRED) against every list, then the connection budgets. A peer in no
/// list, or over a budget, costs accept, getsockopt and close; only admitted connections become
/// NIO channels. NIO's own accept path (a channel, its registration, a hop to another event loop)
/// for every connection let one process that reconnected as fast as it was closed keep the listen
/// queue full, so a listed client's non-blocking connect failed with EAGAIN.
final class AcceptLoop: Sendable {
    private let listener: CInt
    private let wake: (read: CInt, write: CInt)
    private let broker: BrokerContext
    private let group: MultiThreadedEventLoopGroup
    private let thread = NIOThreadPool(numberOfThreads: 1)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `listener`: a listening Unix stream socket; made non-blocking here.
    init(listener: CInt, broker: BrokerContext, group: MultiThreadedEventLoopGroup) throws(Failure) {
        var fds: [CInt] = [-1, -1]
        let piped = CKB_pipe(&fds)
        guard piped == 0 else { throw Failure(description: "cannot create a pipe: \(errnoText(-piped))") }
        let nonblocking = CKB_set_nonblocking(listener)
        guard nonblocking == 0 else {
            close(fds[0])
            close(fds[1])
            throw Failure(description: "cannot make the socket non-blocking: \(errnoText(-nonblocking))")
        }
        self.listener = listener
        self.wake = (fds[0], fds[1])
        self.broker = broker
        self.group = group
    }

    func start() {
        thread.start()
        thread.submit { _ in self.run() }
    }

    /// Stops accepting and waits for the thread; the listening socket is closed.
    func stop() async {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        try? await thread.shutdownGracefully()
        close(listener)
        close(wake.read)
        close(wake.write)
    }

    private func run() {
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                broker.logger.error("cannot wait for connections: \(errnoText(errno))")
                return
            }
            if fds[1].revents != 0 { return }
            acceptPending()
        }
    }

    /// Everything in the listen queue, in batches, so a flood is drained as it arrives.
    private func acceptPending() {
        for _ in 0..<4096 {
            let fd = CKB_accept(listener)
            if fd >= 0 {
                admit(fd)
                continue
            }
            switch -fd {
            case EAGAIN, EINTR, ECONNABORTED:
                return
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                broker.counters.rejectedConnections.add(1, ordering: .relaxed)
                broker.peerLog.report(.refused, uid: UInt32.max, level: .error) {
                    "cannot accept a connection: \(errnoText(-fd)); raise LimitNOFILE= or lower max_connections"
                }
                usleep(50_000)  // the queue stays readable: do not spin
                return
            default:
                broker.logger.error("cannot accept a connection: \(errnoText(-fd))")
                return
            }
        }
    }

    private func admit(_ fd: CInt) {
        let broker = broker
        var peer = CKB_peer_credentials()
        let read = CKB_get_peer_credentials(fd, &peer)
        // Each refusal is logged before the close, so the line is there when the peer sees EOF.
        guard read == 0 else {
            broker.counters.rejectedConnections.add(1, ordering: .relaxed)
            broker.peerLog.report(.refused, uid: UInt32.max, level: .error) {
                "refused a connection: cannot read its credentials (SO_PEERCRED): \(errnoText(-read))"
            }
            close(fd)
            return
        }
        guard broker.access.isListedAnywhere(uid: peer.uid, gid: peer.gid) else {
            broker.counters.denied.add(1, ordering: .relaxed)
            broker.peerLog.report(.denied, uid: peer.uid, level: .warning, metadata: ["peer_uid": "\(peer.uid)", "event": "peer_denied"]) {
                "denied uid \(peer.uid) gid \(peer.gid) (pid \(peer.pid)) at connect: not in the clients of any instance nor in admins; closed before reading"
            }
            close(fd)
            return
        }
        if let refusal = broker.registry.admit(uid: peer.uid) {
            broker.counters.rejectedConnections.add(1, ordering: .relaxed)
            broker.peerLog.report(.refused, uid: peer.uid, level: .warning, metadata: ["peer_uid": "\(peer.uid)"]) {
                switch refusal {
                case let .total(limit):
                    "refused a connection of uid \(peer.uid): \(limit) connections are open (max_connections)"
                case let .perUID(limit):
                    "refused a connection of uid \(peer.uid): it has \(limit) connections open (max_connections_per_uid)"
                case let .unauthenticated(limit):
                    "refused a connection of uid \(peer.uid): it has \(limit) connections that have not finished HELLO (max_unauthenticated_per_uid)"
                }
            }
            close(fd)
            return
        }
        let admission = Admission(uid: peer.uid, registry: broker.registry)
        let credentials = peer
        ClientBootstrap(group: group)
            .channelOption(.maxMessagesPerRead, value: 16)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(broker: broker, peer: credentials, admission: admission, socket: fd))
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                admission.release()
                broker.logger.error("cannot serve a connection of uid \(credentials.uid): \(error)")
            }
    }
}
