"""An independent Python implementation of keybroker wire protocol v1 (docs/protocol.md).

Used by the integration tests as a second, separately written client: if the daemon and this
module disagree about the format, the tests fail.
"""
import socket
import struct

OP_HELLO, OP_LATEST_KEY, OP_GET_KEY, OP_ROTATE, OP_STATUS, OP_ADMIN, OP_INFO = 1, 2, 3, 4, 5, 6, 7
OK, NOT_FOUND, UNAVAILABLE, DENIED, BAD_REQUEST, INTERNAL, UNSUPPORTED, PARTIAL, REFUSED, LOCKED = range(10)
STATUS_NAMES = ["OK", "NOT_FOUND", "UNAVAILABLE", "DENIED", "BAD_REQUEST", "INTERNAL", "UNSUPPORTED", "PARTIAL",
                "REFUSED", "LOCKED"]
ALL_KEYS = 0xFFFFFFFF
MAX_FRAME = 65536


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def request(op, request_id, body=b""):
    return frame(struct.pack(">BI", op, request_id) + body)


def hello(request_id=1, instance="default", client="pytest", protocol=1):
    return request(OP_HELLO, request_id, struct.pack(">H", protocol) + string(instance) + string(client))


def latest_key(request_id, key_id):
    return request(OP_LATEST_KEY, request_id, struct.pack(">I", key_id))


def get_key(request_id, key_id, version):
    return request(OP_GET_KEY, request_id, struct.pack(">II", key_id, version))


def rotate(request_id, key_id):
    return request(OP_ROTATE, request_id, struct.pack(">I", key_id))


def status(request_id):
    return request(OP_STATUS, request_id)


def admin(request_id, command):
    """ADMIN (0x06), the extension to v1 for admin commands (docs/protocol.md)."""
    return request(OP_ADMIN, request_id, string(command))


def info(request_id):
    """INFO (0x07), the extension to v1 that says what the bound instance is (docs/protocol.md)."""
    return request(OP_INFO, request_id)


def _strings(data, count):
    out = []
    for _ in range(count):
        (n,) = struct.unpack(">H", data[:2])
        assert len(data) >= 2 + n, "string longer than the body"
        out.append(data[2:2 + n].decode())
        data = data[2 + n:]
    return out, data


class Response:
    def __init__(self, payload):
        self.op, self.request_id, self.status = struct.unpack(">BIB", payload[:6])
        self.body = payload[6:]

    @property
    def message(self):
        (n,) = struct.unpack(">H", self.body[:2])
        return self.body[2:2 + n].decode()

    def refusal(self):
        """(message, service code, key) of a REFUSED answer."""
        fields, rest = _strings(self.body, 3)
        assert not rest, "trailing bytes after the refusal"
        return tuple(fields)

    def info(self):
        """{name: value} of an INFO answer."""
        (count,) = struct.unpack(">H", self.body[:2])
        fields, rest = _strings(self.body[2:], 2 * count)
        assert not rest, "trailing bytes after the fields"
        return dict(zip(fields[0::2], fields[1::2]))

    def key(self):
        """(version, key bytes) of a LATEST_KEY answer."""
        version, n = struct.unpack(">IH", self.body[:6])
        assert len(self.body) == 6 + n, "trailing bytes after key"
        return version, self.body[6:6 + n]

    def key_bytes(self):
        """key bytes of a GET_KEY answer."""
        (n,) = struct.unpack(">H", self.body[:2])
        assert len(self.body) == 2 + n, "trailing bytes after key"
        return self.body[2:]

    def rotated(self):
        (count,) = struct.unpack(">I", self.body[:4])
        return [struct.unpack(">II", self.body[4 + 8 * i:12 + 8 * i]) for i in range(count)]

    def partial(self):
        """(rotated [(id, version)], failed [(id, status)]) of a PARTIAL answer to ROTATE."""
        (n,) = struct.unpack(">H", self.body[:2])
        rest = self.body[2 + n:]
        (count,) = struct.unpack(">I", rest[:4])
        rotated = [struct.unpack(">II", rest[4 + 8 * i:12 + 8 * i]) for i in range(count)]
        rest = rest[4 + 8 * count:]
        (failed,) = struct.unpack(">I", rest[:4])
        assert len(rest) == 4 + 5 * failed, "trailing bytes after the failed keys"
        return rotated, [struct.unpack(">IB", rest[4 + 5 * i:9 + 5 * i]) for i in range(failed)]

    def __repr__(self):
        name = STATUS_NAMES[self.status] if self.status < len(STATUS_NAMES) else self.status
        return f"Response(op={self.op}, id={self.request_id}, status={name}, body={self.body!r})"


class Client:
    """A blocking client over a real Unix socket."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.next_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by broker")
            buf += chunk
        return buf

    def recv(self):
        (n,) = struct.unpack(">I", self._exact(4))
        return Response(self._exact(n))

    def closed_by_peer(self):
        """True when the broker closed the connection (EOF), after draining anything pending."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def _id(self):
        rid = self.next_id
        self.next_id += 1
        return rid

    def call(self, data_for_id):
        rid = self._id()
        self.send(data_for_id(rid))
        r = self.recv()
        assert r.request_id == rid, f"response id {r.request_id} for request {rid}"
        return r

    def hello(self, instance="default", client="pytest", protocol=1):
        return self.call(lambda rid: hello(rid, instance, client, protocol))

    def latest(self, key_id):
        return self.call(lambda rid: latest_key(rid, key_id))

    def get(self, key_id, version):
        return self.call(lambda rid: get_key(rid, key_id, version))

    def rotate(self, key_id):
        return self.call(lambda rid: rotate(rid, key_id))

    def status(self):
        return self.call(lambda rid: status(rid))

    def info(self):
        return self.call(lambda i: info(i))

    def admin(self, command):
        return self.call(lambda rid: admin(rid, command))
