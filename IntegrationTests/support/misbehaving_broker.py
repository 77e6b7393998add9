"""A scriptable server of keybroker wire protocol v1 that can lie.

This is a hand-written fake, and the one the plugin's tests need: keybrokerd never sends a
wrong version, a key of the wrong length, other bytes for a cached version, an answer to a
request never made, a 100 KB frame, or half a frame, so no real implementation can play the
broker that lies (GUIDE.md allows a fake for exactly this). Everything else in the tests talks
to the real keybrokerd.

By default it behaves: HELLO is accepted, LATEST_KEY creates version 1 of an unknown key,
GET_KEY answers known versions and NOT_FOUND otherwise, ROTATE adds a version, INFO is
UNSUPPORTED unless `broker.key_set` is set (then it names it). A test replaces
the answer to an op with `broker.script[op] = handler`; a handler gets the request and returns
the frames to send (bytes), or NEVER (keep reading, never answer), CLOSE (close now),
HALF (send half of the normal answer, then close). Every request frame received is recorded in
`broker.frames` as (op, body).
"""
import os
import secrets
import socket
import struct
import threading
import time

import kbproto
from relay import accept_each, cut

NEVER, CLOSE, HALF = "never", "close", "half"


class Request:
    def __init__(self, op, request_id, body):
        self.op, self.request_id, self.body = op, request_id, body

    @property
    def key_id(self):
        return struct.unpack(">I", self.body[:4])[0]

    @property
    def version(self):
        return struct.unpack(">I", self.body[4:8])[0]


def answer(op, request_id, status, body=b""):
    return kbproto.frame(struct.pack(">BIB", op, request_id, status) + body)


def failure(req, status, message):
    return answer(req.op, req.request_id, status, kbproto.string(message))


def latest_answer(req, version, key):
    return answer(req.op, req.request_id, kbproto.OK, struct.pack(">IH", version, len(key)) + key)


def info_answer(req, fields):
    body = struct.pack(">H", len(fields)) + b"".join(kbproto.string(k) + kbproto.string(v) for k, v in fields.items())
    return answer(req.op, req.request_id, kbproto.OK, body)


def key_answer(req, key):
    return answer(req.op, req.request_id, kbproto.OK, struct.pack(">H", len(key)) + key)


class MisbehavingBroker:
    def __init__(self, path, key_length=32):
        self.path = str(path)
        self.key_length = key_length
        self.keys = {}            # key id -> [bytes of version 1, 2, ...]
        self.key_set = None       # INFO answered (with this key_set) when set, else UNSUPPORTED
        self.frames = []
        self.script = {}          # op -> handler(broker, request) -> bytes | NEVER | CLOSE | HALF
        self.lock = threading.Lock()
        self.listener = None
        self.connections = []

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        accept_each(self.listener, self._admit)
        return self

    def stop(self):
        """The broker goes away: the socket disappears and every connection is closed."""
        if self.listener:
            self.listener.close()
            self.listener = None
        if os.path.exists(self.path):
            os.unlink(self.path)
        with self.lock:
            conns, self.connections = self.connections, []
        cut(conns)

    def count(self, op, key_id=None):
        with self.lock:
            return sum(1 for o, body in self.frames
                       if o == op and (key_id is None or struct.unpack(">I", body[:4])[0] == key_id))

    # ---- keys ----------------------------------------------------------------------------------

    def add_key(self, key_id, versions=1):
        with self.lock:
            self.keys.setdefault(key_id, [])
            while len(self.keys[key_id]) < versions:
                self.keys[key_id].append(secrets.token_bytes(self.key_length))
            return self.keys[key_id]

    def default(self, req):
        if req.op == kbproto.OP_HELLO:
            return answer(req.op, req.request_id, kbproto.OK, struct.pack(">H", 1) + kbproto.string("misbehaving 1"))
        if req.op == kbproto.OP_LATEST_KEY:
            versions = self.add_key(req.key_id)
            return latest_answer(req, len(versions), versions[-1])
        if req.op == kbproto.OP_GET_KEY:
            versions = self.keys.get(req.key_id, [])
            if 1 <= req.version <= len(versions):
                return key_answer(req, versions[req.version - 1])
            return failure(req, kbproto.NOT_FOUND, f"key {req.key_id} has no version {req.version}")
        if req.op == kbproto.OP_INFO and self.key_set is not None:
            return info_answer(req, {"instance": "default", "provider": "local", "key_set": self.key_set})
        if req.op == kbproto.OP_ROTATE:
            ids = sorted(self.keys) if req.key_id == kbproto.ALL_KEYS else [req.key_id]
            out = b""
            for i in ids:
                out += struct.pack(">II", i, len(self.add_key(i, len(self.keys.get(i, [])) + 1)))
            return answer(req.op, req.request_id, kbproto.OK, struct.pack(">I", len(ids)) + out)
        return failure(req, kbproto.UNSUPPORTED, "unknown op")

    # ---- serving -------------------------------------------------------------------------------

    def _admit(self, conn):
        with self.lock:
            self.connections.append(conn)
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read(self, conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError
            buf += chunk
        return buf

    def _serve(self, conn):
        try:
            while True:
                (n,) = struct.unpack(">I", self._read(conn, 4))
                payload = self._read(conn, n)
                op, rid = struct.unpack(">BI", payload[:5])
                req = Request(op, rid, payload[5:])
                with self.lock:
                    self.frames.append((op, req.body))
                handler = self.script.get(op)
                out = handler(self, req) if handler else self.default(req)
                if out == NEVER:
                    continue
                if out == CLOSE:
                    break
                if out == HALF:
                    whole = self.default(req)
                    conn.sendall(whole[:len(whole) // 2])
                    break
                conn.sendall(out)
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            conn.close()


def delayed(seconds, handler):
    """A handler that answers like `handler` after `seconds`."""
    def run(broker, req):
        time.sleep(seconds)
        return handler(broker, req)
    return run
