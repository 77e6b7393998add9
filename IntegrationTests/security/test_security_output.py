"""Bounded answers (issue 11): every answer, STATUS and cached keys included, counts against the
connection's output budget until the socket has taken it; a client that does not read is no
longer read, and is closed after frame_timeout_ms; shutdown takes at most frame_timeout_ms
whatever clients do.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import kbproto as kb
from broker import Broker, me
from localusers import LocalUsers

ATTACKER = Path(__file__).resolve().parent / "attacker.py"


@pytest.fixture(scope="module")
def users():
    u = LocalUsers("o")
    names = {role: u.user(role).pw_name for role in ("alice", "dave")}
    yield u, names
    u.cleanup()


def make_broker(workdir, users, name, frame_timeout_ms):
    _, names = users
    b = Broker(workdir / name, extra={"frame_timeout_ms": frame_timeout_ms})
    b.instances["default"]["clients"] = [me(), names["alice"], names["dave"]]
    b.write_config()
    b.start()
    os.chmod(b.socket, 0o666)  # both users can open it; SO_PEERCRED decides
    with kb.Client(b.socket) as c:
        c.hello()
        for key_id in range(1, 481):  # a STATUS answer of about 11 kB, as in the issue
            assert c.latest(key_id).status == kb.OK
        assert len(c.status().message) > 10_000
    return b


def rss_kib(pid):
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1])


def attacker(users, role, *args):
    u, names = users
    return subprocess.Popen(u.python(names[role], ATTACKER, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc, timeout=60):
    deadline = time.time() + timeout
    line = proc.stdout.readline()
    assert line or time.time() < deadline, proc.stderr.read()
    return json.loads(line)


def test_a_client_that_pipelines_status_without_reading_is_bounded(workdir, users):
    """Issue 11: 1.47 MB of pipelined STATUS requests, never read: 1,161 MiB RSS, other clients
    timed out for about 24 s, SIGTERM took 32 s."""
    u, names = users
    b = make_broker(workdir, users, "status-flood", frame_timeout_ms=3000)
    try:
        before = rss_kib(b.proc.pid)
        flood = attacker(users, "alice", "pipeline", b.socket, 6, "status")
        time.sleep(1)
        probe = subprocess.run(u.python(names["dave"], ATTACKER, "probe", b.socket, 4), capture_output=True, text=True, timeout=60)
        sent = first_line(flood)["sent_bytes"]
        grown = (rss_kib(b.proc.pid) - before) / 1024
        latencies = json.loads(probe.stdout)["probes"]
        print(f"\nFIGURE status flood: {sent} bytes of requests taken, RSS grew {grown:.1f} MiB; "
              f"other client served in {sum(isinstance(x, float) for x in latencies)} of {len(latencies)} probes, "
              f"slowest {max(x for x in latencies if isinstance(x, float))} s")
        assert all(isinstance(x, float) and x < 2.0 for x in latencies), latencies
        assert grown < 48, f"RSS grew {grown:.1f} MiB"
        assert sent < 4 * 1024 * 1024, "the broker kept reading a client that did not read"
        assert "has not read its answers for 3000 ms" in b.log_text()
        flood.kill()
        flood.wait()
    finally:
        b.stop()


def test_shutdown_takes_at_most_frame_timeout_whatever_clients_do(workdir, users):
    b = make_broker(workdir, users, "shutdown", frame_timeout_ms=4000)
    flood = attacker(users, "alice", "pipeline", b.socket, 30, "mixed")
    try:
        time.sleep(1.5)  # answers to new keys are stuck behind unread STATUS answers
        start = time.time()
        code = b.stop(signal.SIGTERM, timeout=40)
        took = time.time() - start
        print(f"\nFIGURE shutdown with a client that does not read: {took:.2f} s (frame_timeout_ms 4000)")
        assert code == 0, b.log_text()[-2000:]
        assert took < 4 + 2, f"SIGTERM took {took:.1f} s"
    finally:
        flood.kill()
        flood.wait()
