"""Limits against peers that hold resources without using them (issue 6, item 3)."""
import resource
import socket
import time

import pytest

import kbproto as kb
from broker import Broker


@pytest.fixture(scope="module")
def broker(workdir):
    b = Broker(workdir / "limits", extra={"frame_timeout_ms": 600, "max_in_flight_per_connection": 8, "max_connections": 1100,
                                          "max_connections_per_uid": 1100})
    b.start()
    yield b
    b.stop()


def served(broker):
    with kb.Client(broker.socket) as c:
        return c.hello().status == kb.OK and c.latest(1).status == kb.OK


def test_stalled_half_frame_is_disconnected_and_logged(broker):
    c = kb.Client(broker.socket, timeout=5)
    c.hello()
    c.send(kb.latest_key(2, 1)[:6])
    start = time.time()
    assert c.closed_by_peer()
    assert time.time() - start < 4
    assert "frame_timeout_ms" in broker.log_text()
    assert served(broker)


def test_connection_without_hello_is_disconnected(broker):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(broker.socket)
    assert s.recv(10) == b""
    s.close()
    assert "no HELLO within 600 ms" in broker.log_text()


def test_hello_then_silence_is_kept_when_idle_timeout_is_off(broker):
    with kb.Client(broker.socket) as c:
        c.hello()
        time.sleep(1.5)
        assert c.latest(1).status == kb.OK


def test_too_many_requests_in_flight_disconnects_only_that_client(broker):
    with kb.Client(broker.socket) as other:
        other.hello()
        greedy = kb.Client(broker.socket, timeout=10)
        greedy.hello()
        # new key ids take the slow path; more than 8 at once breaks the limit
        greedy.send(b"".join(kb.latest_key(100 + i, 1000 + i) for i in range(40)))
        statuses = []
        try:
            while True:
                statuses.append(greedy.recv().status)
        except (ConnectionError, OSError):
            pass
        assert kb.UNAVAILABLE in statuses
        assert "max_in_flight_per_connection" in broker.log_text()
        assert other.latest(1).status == kb.OK


def test_a_thousand_idle_connections_do_not_stop_a_new_client(broker):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    idle = []
    try:
        for n in range(1000):
            c = kb.Client(broker.socket)
            try:
                assert c.hello().status == kb.OK
            except (ConnectionError, AssertionError) as e:
                raise AssertionError(f"connection {n}: {e!r}; broker log:\n{broker.log_text()[-1500:]}")
            idle.append(c)
        assert served(broker)
        with kb.Client(broker.socket) as c:
            c.hello()
            import json
            assert json.loads(c.status().message)["connections"] >= 1001
    finally:
        for c in idle:
            c.close()


def test_max_connections_refuses_the_excess_and_recovers(workdir):
    b = Broker(workdir / "maxconn", extra={"max_connections": 5})
    b.start()
    time.sleep(0.3)  # the readiness probe's connection is counted until the broker sees it close
    try:
        held = [kb.Client(b.socket) for _ in range(5)]
        for c in held:
            assert c.hello().status == kb.OK
        extra = kb.Client(b.socket, timeout=5)
        assert extra.closed_by_peer()
        assert "max_connections" in b.log_text()
        for c in held:
            c.close()
        time.sleep(0.2)
        assert served(b)
    finally:
        b.stop()


def test_idle_timeout_when_configured(workdir):
    b = Broker(workdir / "idle", extra={"idle_timeout_ms": 300, "frame_timeout_ms": 200})
    b.start()
    try:
        c = kb.Client(b.socket, timeout=5)
        c.hello()
        assert c.closed_by_peer()
        assert "idle_timeout_ms" in b.log_text()
    finally:
        b.stop()


def test_stall_right_after_the_length_prefix_is_disconnected(broker):
    c = kb.Client(broker.socket, timeout=5)
    c.hello()
    c.send(b"\x00\x00\x00\x09")  # a whole length prefix, then nothing
    start = time.time()
    assert c.closed_by_peer()
    assert time.time() - start < 4


def test_a_client_that_never_reads_its_answers_does_not_grow_the_broker(broker):
    def rss():
        return int([l for l in open(f"/proc/{broker.proc.pid}/status") if l.startswith("VmRSS")][0].split()[1])

    with kb.Client(broker.socket) as warm:
        warm.hello()
        warm.latest(1)
    before = rss()
    greedy = kb.Client(broker.socket, timeout=0.5)
    greedy.hello()
    batch = b"".join(kb.latest_key(10 + i, 1) for i in range(1000))
    sent = 0
    deadline = time.time() + 3
    try:
        while time.time() < deadline:
            greedy.sock.sendall(batch)
            sent += 1000
    except (socket.timeout, OSError):
        pass  # the broker stopped reading: the kernel buffers are full
    grown = rss() - before
    assert served(broker), "other clients are served meanwhile"
    greedy.close()
    # each unread answer would hold 48 bytes (and a key) in the broker's heap without backpressure
    assert grown < 16 * 1024, f"RSS grew {grown} kB after {sent} unread requests"
    assert sent < 1_000_000, "the broker kept reading although nobody read its answers"
