"""An unlisted peer costs the broker nothing (issue 11): peers in no list are closed at accept,
before their first byte; connections are capped per uid and, before HELLO, by a small budget of
their own; denials are logged once per peer per interval with a count, and every string a peer
sent is cut and escaped. The attackers are real local users this module creates.
"""
import grp
import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest

import kbproto as kb
from broker import Broker, me
from localusers import LocalUsers

ATTACKER = Path(__file__).resolve().parent / "attacker.py"
LOG_INTERVAL_MS = 2000


@pytest.fixture(scope="module")
def users():
    u = LocalUsers("p")
    sock = u.group("sock")
    names = {role: u.user(role, groups=[sock.gr_name]).pw_name for role in ("alice", "bob", "carol", "mallory")}
    names["sock"] = sock.gr_name
    yield u, names
    u.cleanup()


@pytest.fixture(scope="module")
def broker(workdir, users):
    _, names = users
    # 32 connections before HELLO per uid, not the default 128: the budget at its limit, quickly.
    b = Broker(workdir / "peers", extra={"frame_timeout_ms": 2000, "peer_log_interval_ms": LOG_INTERVAL_MS,
                                         "max_unauthenticated_per_uid": 32})
    b.instances["default"]["clients"] = [me(), names["alice"]]
    b.instances["other"] = {"provider": "local", "clients": [names["bob"], names["carol"]], "master_key_file": str(b.master_key)}
    b.write_config()
    b.start()
    # What keybroker.socket does with SocketGroup=: every attacker can open the socket.
    os.chown(b.socket, -1, grp.getgrnam(names["sock"]).gr_gid)
    yield b
    b.stop()


def run_as(users, role, *args, timeout=60):
    u, names = users
    out = subprocess.run(u.python(names[role], ATTACKER, *args), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_as(users, role, *args):
    u, names = users
    return subprocess.Popen(u.python(names[role], ATTACKER, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def wait_for_connections(broker, count, timeout):
    """Whether the broker's own count of open connections reached `count` within `timeout` s."""
    deadline = time.time() + timeout
    with kb.Client(broker.socket) as c:
        c.hello()
        while time.time() < deadline:
            if json.loads(c.status().message)["connections"] >= count:
                return True
            time.sleep(0.2)
    return False


def uid(users, role):
    return pwd.getpwnam(users[1][role]).pw_uid


def lines_since(broker, offset):
    return broker.log_path.read_bytes()[offset:].decode(errors="replace").splitlines()


def test_unlisted_peer_is_closed_before_its_first_byte(broker, users):
    offset = broker.log_path.stat().st_size
    out = run_as(users, "mallory", "connect", broker.socket)
    assert out["status"] == "closed", out
    with kb.Client(broker.socket) as c:
        c.hello()
        assert json.loads(c.status().message)["denied"] >= 1
    mallory = uid(users, "mallory")
    lines = [l for l in lines_since(broker, offset) if f"denied uid {mallory} " in l]
    assert lines and "at connect" in lines[0] and "closed before reading" in lines[0], lines


def test_connections_that_never_say_hello_do_not_keep_a_listed_client_out(broker, users):
    """Issue 11: 1,100 connections that never send HELLO, reopened as they are closed, kept a
    listed client out in 7 of 8 probes over 24 s (the connection cap was global)."""
    offset = broker.log_path.stat().st_size
    started = time.time()
    # The attack lasts until the test has measured (SIGTERM): on a loaded machine a fixed length
    # could end before the probes ran, and the broker would be measured idle.
    attackers = [
        start_as(users, "mallory", "hold", broker.socket, 300, 1100),         # in no list
        start_as(users, "carol", "hold", broker.socket, 300, 1100),           # listed, never says HELLO
        start_as(users, "bob", "hold", broker.socket, 300, 1100, "other"),    # listed, says HELLO
    ]
    try:
        at_strength = wait_for_connections(broker, 256, timeout=60)
        probe = run_as(users, "alice", "probe", broker.socket, 6, timeout=60)
        with kb.Client(broker.socket) as c:
            c.hello()
            open_during_attack = json.loads(c.status().message)["connections"]
    finally:
        for p in attackers:
            p.terminate()
    held = [finish(p) for p in attackers]
    latencies = probe["probes"]
    print(f"\nFIGURE hold attack: listed client served in {sum(isinstance(x, float) for x in latencies)} of "
          f"{len(latencies)} probes, slowest {max((x for x in latencies if isinstance(x, float)), default=None)} s; "
          f"connections open {open_during_attack}; mallory closed {held[0]['closed_by_broker']} times")
    assert len(latencies) >= 8 and all(isinstance(x, float) and x < 2.0 for x in latencies), latencies
    # bob holds max_connections_per_uid (256) authenticated connections, carol at most 32 before
    # HELLO, mallory none; the listed client and this test's own connection come on top.
    assert at_strength, "the attackers never held 256 connections"
    assert 256 <= open_during_attack <= 256 + 32 + 4, open_during_attack
    lines = lines_since(broker, offset)
    bob, carol, mallory = uid(users, "bob"), uid(users, "carol"), uid(users, "mallory")
    assert any(f"uid {bob}: it has 256 connections open (max_connections_per_uid)" in l for l in lines)
    assert any(f"uid {carol}: it has 32 connections that have not finished HELLO (max_unauthenticated_per_uid)" in l for l in lines)
    mallory_lines = [l for l in lines if f"uid {mallory}" in l]
    # one line per interval, each with the count of those it stands for
    attack_seconds = time.time() - started
    assert 1 <= len(mallory_lines) <= attack_seconds * 1000 // LOG_INTERVAL_MS + 3, mallory_lines
    assert held[0]["closed_by_broker"] > 1000, held[0]
    assert any("more denied connections" in l for l in mallory_lines), mallory_lines


def test_denied_hello_flood_is_logged_once_per_interval_and_escaped(broker, users):
    """Issue 11: 14,828 denied HELLOs with 65,000-byte, newline or ESC names in 10 s grew the log
    by 966 MB, and a client name with a newline wrote a line of its own."""
    time.sleep(LOG_INTERVAL_MS / 1000)  # a fresh interval for bob
    offset = broker.log_path.stat().st_size
    flood_seconds = 6
    out = run_as(users, "bob", "hello-flood", broker.socket, flood_seconds, "default", timeout=60)
    time.sleep(2 * LOG_INTERVAL_MS / 1000 + 0.5)  # the count of the last interval is flushed
    grown = broker.log_path.stat().st_size - offset
    lines = lines_since(broker, offset)
    print(f"\nFIGURE hello flood: {out['sent']} denied HELLOs in {flood_seconds} s grew the log by {grown} bytes ({len(lines)} lines)")
    assert out["denied"] >= 100, out
    assert grown < 8 * 1024, "\n".join(lines)
    bob = uid(users, "bob")
    assert all(len(l) < 600 for l in lines), max(lines, key=len)
    assert not any(re.match(r"^\S+ keybrokerd: note: \[default\] rotated key 1 to version 99", l) for l in lines), lines
    assert b"\x1b" not in broker.log_path.read_bytes()[offset:], "a terminal escape reached the log"
    denied = [l for l in lines if f"denied uid {bob} " in l or f"from uid {bob}" in l]
    assert denied and len(denied) <= flood_seconds * 1000 // LOG_INTERVAL_MS + 3, denied
    counted = sum(int(m.group(1)) for l in denied for m in [re.search(r"(\d+) more denied connections", l)] if m)
    assert counted + len([l for l in denied if "denied uid" in l]) == out["denied"], (counted, out, denied)
    first = next(l for l in denied if "denied uid" in l)
    assert 'client "' + "A" * 60 in first and "...(65000 bytes)" in first, first


def test_peer_strings_reach_the_log_escaped(broker, users):
    offset = broker.log_path.stat().st_size
    assert run_as(users, "carol", "connect", broker.socket, "default", "FORGED")["status"] == "DENIED"
    assert run_as(users, "alice", "connect", broker.socket, "ESC", "ESC")["status"] == "DENIED"
    lines = lines_since(broker, offset)
    assert not any("rotated key 1 to version 99" in l and "denied" not in l for l in lines), lines
    forged = [l for l in lines if f"denied uid {uid(users, 'carol')} " in l]
    assert forged and 'client "x\\n2026-01-01T00:00:00Z keybrokerd: note: [default] rotated key 1"...(78 bytes)' in forged[0], forged
    escaped = [l for l in lines if f"denied uid {uid(users, 'alice')} " in l]
    assert escaped and 'instance "\\x1b[2J\\x1b[31mred" is not configured' in escaped[0], escaped
    assert b"\x1b" not in broker.log_path.read_bytes()[offset:]


def test_listed_client_is_served_while_a_peer_floods(broker, users):
    flood = start_as(users, "mallory", "hello-flood", broker.socket, 5, "default")
    other = start_as(users, "bob", "hello-flood", broker.socket, 5, "default")
    probe = run_as(users, "alice", "probe", broker.socket, 4)
    finish(flood), finish(other)
    assert all(isinstance(x, float) and x < 2.0 for x in probe["probes"]), probe
