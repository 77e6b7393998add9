"""Hostile clients over the real socket (issue 6, item 3).

32 connections at a time send random and mutated frames (valid frames of every op with bits
flipped, bytes set to edge values, lengths rewritten, truncated, extended, duplicated, pure garbage,
half frames then a close) while a well-behaved client keeps checking its keys. The daemon must not
crash, the good client must get every answer right, each hostile connection must get only
well-formed responses (to requests it actually sent) and then a close, every key answered to
anyone must be the same bytes for the same (id, version), and memory and file descriptors must
come back to where they were.

Seeded and reproducible per connection: KEYBROKER_HOSTILE_SEED picks the bytes,
KEYBROKER_HOSTILE_CONNECTIONS how many connections each of the KEYBROKER_HOSTILE_WORKERS
threads opens (`make test`: 32 x 1,500; `make soak`: 32 x 20,000).
"""
import json
import os
import random
import socket
import struct
import threading
import time

import pytest

import kbproto as kb
from broker import Broker

SEED = int(os.environ.get("KEYBROKER_HOSTILE_SEED", "20261130"))
WORKERS = int(os.environ.get("KEYBROKER_HOSTILE_WORKERS", "32"))
CONNECTIONS = int(os.environ.get("KEYBROKER_HOSTILE_CONNECTIONS", "1500"))
WARMUP_CONNECTIONS = 5
GOOD_KEYS = (1, 2, 3, 4)
KEY_IDS = GOOD_KEYS + (5, 6, 7, 8)
INTERESTING_U32 = (0, 1, 4, 5, 6, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x10001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xC0, 0xFF)


@pytest.fixture(scope="module")
def broker(workdir):
    # Hostile peers are clients, not admins: ADMIN must be DENIED and STATUS must show one instance.
    b = Broker(workdir / "hostile", extra={"admins": [], "frame_timeout_ms": 2000})
    b.instances["other"] = {"provider": "local", "clients": ["nobody"], "master_key_file": str(b.master_key)}
    b.write_config()
    b.start()
    yield b
    b.stop()


# ---------------------------------------------------------------------------------------------
# What the hostile peers send


def valid_frame(rng):
    rid = rng.randrange(1 << 32)
    key = rng.choice(KEY_IDS)
    kind = rng.randrange(11)
    if kind == 0:
        return kb.hello(rid, rng.choice(["default", "default", "other", "nosuch", "", "d\u00e9faut"]),
                        "hostile", rng.choice([1, 1, 1, 0, 2]))
    if kind in (1, 2, 3):
        return kb.latest_key(rid, key)
    if kind in (4, 5):
        return kb.get_key(rid, key, rng.randint(0, 3))
    if kind == 6:
        return kb.rotate(rid, rng.choice(KEY_IDS[4:]))
    if kind == 7:
        return kb.status(rid)
    if kind == 8:
        return kb.admin(rid, rng.choice(["rewrap alias/evil", "unlock 123456", "", "x" * 300]))
    if kind == 9:
        return kb.info(rid)
    # Ops no broker knows (0x07 is INFO now, sent above).
    return kb.request(rng.choice([0, 8, 0x42, 0xFF]), rid, rng.randbytes(rng.randint(0, 8)))


def mutate(rng, frame):
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        m = rng.randrange(10)
        if m == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif m == 1 and data:
            data[rng.randrange(len(data))] = rng.choice(INTERESTING_BYTES)
        elif m == 2 and data:
            del data[rng.randrange(len(data)):]
        elif m == 3:
            data += rng.randbytes(rng.randint(1, 16))
        elif m == 4 and data:
            i = rng.randrange(len(data))
            data[i:i] = data[i:i + rng.randint(1, 16)]
        elif m in (5, 6) and len(data) >= 4:
            length = rng.choice(INTERESTING_U32 + (len(data) - 5, len(data) - 3, len(data) + 1))
            data[0:4] = struct.pack(">I", length & 0xFFFFFFFF)
        elif m == 7 and len(data) >= 5:
            data[4] = rng.randrange(256)
        elif m == 8 and len(data) >= 9:
            i = rng.randrange(4, len(data) - 1)  # a body field: key id, version or a string length
            data[i:i + 2] = struct.pack(">H", rng.choice((0, 1, 0x7FFF, 0xFFFF, rng.randrange(1 << 16))))
        elif m == 9 and len(data) >= 9:
            i = rng.randrange(4, len(data) - 4)
            data[i:i + 4] = struct.pack(">I", rng.choice(INTERESTING_U32))
    return bytes(data)


def hostile_frame(rng):
    r = rng.random()
    if r < 0.25:
        return valid_frame(rng)
    if r < 0.88:
        return mutate(rng, valid_frame(rng))
    if r < 0.98:
        return rng.randbytes(rng.randint(1, 512))
    return rng.randbytes(rng.randint(60_000, 80_000))


def hostile_stream(rng):
    """One connection's bytes and the number of frames in it (as sent, before the broker splits them)."""
    frames = [kb.hello(rng.randrange(1 << 32), "default", "hostile")] if rng.random() < 0.75 else []
    frames += [hostile_frame(rng) for _ in range(rng.randint(1, 12))]
    return within_key_ids(b"".join(frames)), len(frames)


def within_key_ids(stream):
    """Maps the key id of every well-formed LATEST_KEY, GET_KEY and ROTATE onto KEY_IDS (0 and
    ROTATE's every-key stay). Creating a key for any id is a client's right, not an attack on the
    decoder; unbounded, it would make memory grow with the frames sent and every ROTATE of all
    keys slower than the last."""
    data, offset = bytearray(stream), 0
    while len(data) - offset >= 4:
        (length,) = struct.unpack_from(">I", data, offset)
        if not 1 <= length <= kb.MAX_FRAME or len(data) - offset - 4 < length:
            break
        op = data[offset + 4] if length >= 5 else None
        if (op, length) in ((kb.OP_LATEST_KEY, 9), (kb.OP_GET_KEY, 13), (kb.OP_ROTATE, 9)):
            (key_id,) = struct.unpack_from(">I", data, offset + 9)
            if key_id not in KEY_IDS + (0, kb.ALL_KEYS):
                struct.pack_into(">I", data, offset + 9, KEY_IDS[key_id % len(KEY_IDS)])
        offset += 4 + length
    return bytes(data)


def requests_in(stream):
    """(op, request id) of every request the broker can read from `stream`, split as its FrameDecoder does."""
    seen, offset = set(), 0
    while len(stream) - offset >= 4:
        (length,) = struct.unpack_from(">I", stream, offset)
        if length == 0:
            break
        if length > kb.MAX_FRAME:
            if len(stream) - offset >= 9:
                seen.add(struct.unpack_from(">BI", stream, offset + 4))
            break
        if len(stream) - offset - 4 < length:
            break
        if length >= 5:
            seen.add(struct.unpack_from(">BI", stream, offset + 4))
        offset += 4 + length
    return seen


def frame_bodies(stream):
    """(op, request id) -> body, for the well-delimited frames of `stream` (to cross-check key answers)."""
    bodies, offset = {}, 0
    while len(stream) - offset >= 4:
        (length,) = struct.unpack_from(">I", stream, offset)
        if not 5 <= length <= kb.MAX_FRAME or len(stream) - offset - 4 < length:
            break
        header = struct.unpack_from(">BI", stream, offset + 4)
        bodies[header] = None if header in bodies else stream[offset + 9:offset + 4 + length]
        offset += 4 + length
    return bodies


# ---------------------------------------------------------------------------------------------
# What every answer must be


class Findings:
    """Shared by all threads: counters, the first failures, and every key anyone was told."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}
        self.failures = []
        self.counts = dict(connections=0, frames=0, bytes=0, responses=0, sent_into_close=0, aborted=0, good_checks=0)
        self.statuses = {name: 0 for name in kb.STATUS_NAMES}

    def add(self, statuses=(), **counts):
        with self.lock:
            for name, n in counts.items():
                self.counts[name] += n
            for status in statuses:
                self.statuses[kb.STATUS_NAMES[status]] += 1

    def fail(self, message):
        with self.lock:
            self.failures.append(message)

    def key(self, key_id, version, key_bytes, who):
        """Every answer for (id, version), to any connection, must carry the same bytes."""
        assert key_id != 0 and version != 0, f"{who}: OK answer for key {key_id} version {version}"
        assert len(key_bytes) == 32, f"{who}: key {key_id}.{version} has {len(key_bytes)} bytes"
        with self.lock:
            first = self.keys.setdefault((key_id, version), key_bytes)
        assert first == key_bytes, f"{who}: key {key_id} version {version} answered with different bytes"


def read_string(body, what):
    assert len(body) >= 2, f"{what}: no string length"
    (n,) = struct.unpack_from(">H", body)
    assert len(body) == 2 + n, f"{what}: string of {n} bytes in a body of {len(body)}"
    return body[2:].decode()


def check_response(payload, sent, bodies, findings, who):
    """A response to a hostile connection: well-formed, for a request it sent, and right."""
    assert len(payload) >= 6, f"{who}: response of {len(payload)} bytes"
    op, rid, status = struct.unpack_from(">BIB", payload)
    body = payload[6:]
    assert (op, rid) in sent, f"{who}: response op {op} id {rid} to a request that was never sent"
    assert status <= kb.UNSUPPORTED, f"{who}: unknown status {status}"
    if status != kb.OK:
        assert read_string(body, who), f"{who}: failure without a message"
        assert status != kb.INTERNAL, f"{who}: INTERNAL for op {op}: {read_string(body, who)}"
        return status
    request = bodies.get((op, rid))
    if op == kb.OP_HELLO:
        assert body[:2] == b"\x00\x01", f"{who}: HELLO answered with protocol {body[:2].hex()}"
        read_string(body[2:], who)
    elif op == kb.OP_LATEST_KEY:
        version, n = struct.unpack_from(">IH", body)
        assert len(body) == 6 + n, f"{who}: LATEST_KEY body of {len(body)} bytes for a {n}-byte key"
        if request is not None:
            findings.key(struct.unpack(">I", request)[0], version, body[6:], who)
    elif op == kb.OP_GET_KEY:
        (n,) = struct.unpack_from(">H", body)
        assert len(body) == 2 + n, f"{who}: GET_KEY body of {len(body)} bytes for a {n}-byte key"
        if request is not None:
            findings.key(*struct.unpack(">II", request), body[2:], who)
    elif op == kb.OP_ROTATE:
        (count,) = struct.unpack_from(">I", body)
        assert len(body) == 4 + 8 * count, f"{who}: ROTATE of {count} keys in {len(body)} bytes"
    elif op == kb.OP_STATUS:
        doc = json.loads(read_string(body, who))
        assert set(doc["instances"]) == {"default"}, f"{who}: a client was shown instances {set(doc['instances'])}"
    elif op == kb.OP_INFO:
        (count,) = struct.unpack_from(">H", body)
        fields, rest = {}, body[2:]
        for _ in range(count):
            (n,) = struct.unpack_from(">H", rest)
            name, rest = rest[2:2 + n].decode(), rest[2 + n:]
            (n,) = struct.unpack_from(">H", rest)
            fields[name], rest = rest[2:2 + n].decode(), rest[2 + n:]
        assert not rest, f"{who}: {len(rest)} bytes after INFO's fields"
        assert fields.get("instance") == "default", f"{who}: INFO about instance {fields.get('instance')!r}"
    else:
        raise AssertionError(f"{who}: OK for op {op} (ADMIN must be denied to a non-admin)")
    return status


def receive_all(sock, who):
    """Every response frame until the broker closes; a response cut short is a failure."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise AssertionError(f"{who}: neither answered nor closed within {sock.gettimeout()} s") from None
        if not chunk:
            break
        data += chunk
    frames, offset = [], 0
    while offset < len(data):
        assert len(data) - offset >= 4, f"{who}: {len(data) - offset} stray bytes after the last response"
        (n,) = struct.unpack_from(">I", data, offset)
        assert 1 <= n <= kb.MAX_FRAME, f"{who}: response frame length {n}"
        assert offset + 4 + n <= len(data), f"{who}: response frame of {n} bytes cut at {len(data) - offset - 4}"
        frames.append(data[offset + 4:offset + 4 + n])
        offset += 4 + n
    return frames


def hostile_connection(path, rng, findings, who):
    stream, frame_count = hostile_stream(rng)
    mode = rng.random()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    sent_bytes = 0
    try:
        if mode < 0.2:
            # half a stream, then hang up without reading
            cut = rng.randrange(len(stream)) if stream else 0
            sock.sendall(stream[:cut])
            findings.add(connections=1, frames=frame_count, bytes=cut, aborted=1)
            return
        try:
            if mode < 0.7:
                sock.sendall(stream)
            else:
                offset = 0
                while offset < len(stream):
                    piece = rng.randint(1, 64)
                    sock.sendall(stream[offset:offset + piece])
                    offset += piece
            sent_bytes = len(stream)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            findings.add(sent_into_close=1)  # the broker closed first (bad frame): read what it said
        sent, bodies = requests_in(stream), frame_bodies(stream)
        responses = receive_all(sock, who)
        statuses = [check_response(p, sent, bodies, findings, who) for p in responses]
        findings.add(statuses, connections=1, frames=frame_count, bytes=sent_bytes or len(stream), responses=len(responses))
    finally:
        sock.close()


def hostile_worker(path, index, connections, first, findings):
    for n in range(first, first + connections):
        who = f"hostile worker {index} connection {n} (seed {SEED})"
        rng = random.Random(f"{SEED}/{index}/{n}")
        try:
            hostile_connection(path, rng, findings, who)
        except AssertionError as e:
            findings.fail(str(e))
            return
        except Exception as e:  # an OSError or a bug in this test: either way, report it with the seed
            findings.fail(f"{who}: {e!r}")
            return


def good_client(path, stop, findings):
    """Checks its keys over and over: every answer OK, same bytes for the same version, versions never go back."""
    latest, known = {}, {}
    try:
        with kb.Client(path, timeout=20) as c:
            assert c.hello().status == kb.OK
            while not stop.is_set():
                for key_id in GOOD_KEYS:
                    r = c.latest(key_id)
                    assert r.status == kb.OK, f"good client: LATEST_KEY {key_id}: {r}"
                    version, key_bytes = r.key()
                    assert version >= latest.get(key_id, 0), f"good client: key {key_id} went back to version {version}"
                    latest[key_id] = version
                    assert known.setdefault((key_id, version), key_bytes) == key_bytes, f"good client: key {key_id}.{version} changed"
                    findings.key(key_id, version, key_bytes, "good client")
                for (key_id, version), key_bytes in random.Random(len(known)).sample(sorted(known.items()), min(4, len(known))):
                    r = c.get(key_id, version)
                    assert r.status == kb.OK, f"good client: GET_KEY {key_id}.{version}: {r}"
                    assert r.key_bytes() == key_bytes, f"good client: key {key_id}.{version} changed"
                findings.add(good_checks=len(GOOD_KEYS) + min(4, len(known)))
    except (AssertionError, OSError) as e:
        findings.fail(f"good client: {e!r}")


def run_hostile(path, connections, first, findings):
    threads = [threading.Thread(target=hostile_worker, args=(path, i, connections, first, findings), daemon=True)
               for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    assert not any(t.is_alive() for t in threads), "a hostile worker hung"


def proc_figures(pid):
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return len(os.listdir(f"/proc/{pid}/fd")), int(status["VmRSS"].split()[0])


def fds_settled(pid, wanted, timeout=10):
    deadline = time.time() + timeout
    while True:
        fds, rss = proc_figures(pid)
        if fds <= wanted or time.time() > deadline:
            return fds, rss
        time.sleep(0.05)


def broker_status(path):
    with kb.Client(path) as c:
        assert c.hello().status == kb.OK
        return json.loads(c.status().message)


def test_hostile_frames_from_many_connections_while_a_good_client_checks_its_keys(broker):
    pid = broker.proc.pid
    findings = Findings()
    stop = threading.Event()
    good = threading.Thread(target=good_client, args=(broker.socket, stop, findings), daemon=True)
    good.start()
    time.sleep(0.5)
    fds_idle, _ = proc_figures(pid)  # listening socket, good client, log, ...
    started = time.time()
    try:
        run_hostile(broker.socket, WARMUP_CONNECTIONS, 0, findings)  # allocator, key cache, threads at steady state
        fds_before, rss_before = fds_settled(pid, fds_idle)
        status_before = broker_status(broker.socket)
        run_hostile(broker.socket, CONNECTIONS, WARMUP_CONNECTIONS, findings)
        fds_after, rss_after = fds_settled(pid, fds_before)
        status_after = broker_status(broker.socket)
    finally:
        stop.set()
        good.join(30)
    seconds = time.time() - started
    n = findings.counts
    new_versions = status_after["instances"]["default"]["versions"] - status_before["instances"]["default"]["versions"]
    print(f"\nhostile clients: {n['frames']} frames ({n['bytes']} bytes) on {n['connections']} connections "
          f"from {WORKERS} threads (seed {SEED}) in {seconds:.1f} s; {n['responses']} responses "
          f"({', '.join(f'{k} {v}' for k, v in findings.statuses.items() if v)}), {n['aborted']} hung up mid-stream, "
          f"{n['sent_into_close']} sent into a close; good client: {n['good_checks']} checks; "
          f"{len(findings.keys)} key versions seen; fds {fds_idle} -> {fds_before} -> {fds_after}; "
          f"RSS {rss_before} -> {rss_after} kB with {new_versions} new key versions; "
          f"the broker counted {status_after['malformed']} malformed frames")
    assert broker.proc.poll() is None, f"keybrokerd died:\n{broker.log_text()[-4000:]}"
    assert not findings.failures, "\n".join(findings.failures[:10])
    assert not good.is_alive(), "the good client hung"
    assert n["good_checks"] > 100, "the good client hardly ran"
    assert n["connections"] == WORKERS * (WARMUP_CONNECTIONS + CONNECTIONS)
    assert fds_before == fds_idle and fds_after == fds_idle, "file descriptors leaked"
    # Memory may grow with what is stored (each new version: an index entry and a locked slot),
    # never with the frames or connections.
    allowed = 16 * 1024 + new_versions // 2
    assert rss_after - rss_before < allowed, f"RSS grew by {rss_after - rss_before} kB, more than {allowed} kB"
    with kb.Client(broker.socket) as c:  # still serving a newcomer
        assert c.hello().status == kb.OK
        assert c.latest(GOOD_KEYS[0]).status == kb.OK
