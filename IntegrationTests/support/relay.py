"""A TCP relay on loopback in front of a real server (moto, PyKMIP), and the socket chores the
tests' own small servers share. The relay passes the real server's bytes untouched; subclasses
add the one fault a test needs (s3store.Outage: the network goes away; kmipserver.Relay: the
server stops answering)."""
import socket
import threading


def shut(sock):
    """shutdown(SHUT_RDWR), ignoring a socket that is already down: wakes a thread blocked in
    recv() on it, which close() alone does not."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def cut(sockets):
    """Shuts down and closes every socket of `sockets`: their peers see the connection end."""
    for s in sockets:
        shut(s)
        s.close()


def listener(host="127.0.0.1", port=0, backlog=128):
    """A listening TCP socket (SO_REUSEADDR, so a relay can listen on its port again)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


def accept_each(listening, handle):
    """A thread that accepts connections on `listening` until it is closed and hands each to
    `handle(conn)`; a `handle` that returns False ends it."""
    def loop():
        while True:
            try:
                conn, _ = listening.accept()
            except OSError:
                return
            if handle(conn) is False:
                return
    threading.Thread(target=loop, daemon=True).start()


class TCPRelay:
    """Relays every connection accepted on a listener to 127.0.0.1:`upstream_port`, one thread a
    direction. `serve(listener)` starts the accept loop; it ends when the listener is closed or
    `accepting(listener)` says no. `hold()` runs before each chunk is passed on."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.connections = []

    def serve(self, listening):
        accept_each(listening, lambda client: self._relay(listening, client))

    def accepting(self, listening):
        """Called with the lock held for each new connection: False closes it and ends the loop."""
        return True

    def hold(self):
        """Called before each chunk is delivered; a subclass may wait here."""

    def _relay(self, listening, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return True
        with self.lock:
            if not self.accepting(listening):
                client.close()
                upstream.close()
                return False
            self.connections += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
        return True

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.hold()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            shut(s)
