"""The plugin against a broker that lies, stalls or goes away (IntegrationTests/support/misbehaving_broker.py, the
one hand-written fake of these tests), and against the C floor server for 100,000 key ids.

The plugin runs as mariadbd runs it, loaded by IntegrationTests/plugin/plugin_driver.c. Each test asserts what the
server would see: no INVALID for a key already cached (InnoDB aborts on it), bounded waits, one
ROTATE frame, CPU time while the broker is away, the time deinit takes, and the log lines.
"""
import struct
import subprocess
import time

import pytest

import kbproto
from tools import c_tool
from misbehaving_broker import (CLOSE, HALF, NEVER, MisbehavingBroker, answer, delayed, failure,
                                key_answer, latest_answer)
from plugin_driver import Driver

INVALID = 0xFFFFFFFF
TIMEOUT_MS = 1500


@pytest.fixture
def driver(broker):
    d = Driver(broker.path)
    assert d.init()[0] == 0, d.log
    yield d
    d.close()


def test_100000_key_ids_stay_cached_with_the_broker_gone(tmp_path):
    """Before: 768 key ids and 3,072 versions fitted; the rest went to the broker on every use and
    came back INVALID with it stopped (a server with 800 tables aborted)."""
    floor = subprocess.Popen([str(c_tool("floor_server")), str(tmp_path / "floor.sock"), "100000", "1"])
    try:
        time.sleep(0.3)
        d = Driver(str(tmp_path / "floor.sock"))
        assert d.init()[0] == 0, d.log
        invalid, ms = d.cmd("range 1 100000", timeout=300)
        assert invalid == "0"
    finally:
        floor.terminate()
        floor.wait()
    invalid, ms = d.cmd("range 1 100000")
    assert invalid == "0", "a cached key came back INVALID with the broker gone"
    s = d.status()
    assert s["key_ids_cached"] == 100000 and s["keys_cached"] == 100000
    assert d.latest(100001)[0] == INVALID  # only a key never seen fails
    assert d.deinit()[0] == 0
    d.close()
    assert "cannot grow" not in d.log


def test_out_of_memory_fails_only_the_lookup_that_could_not_be_cached(tmp_path):
    """The cache grows until mmap fails: then the new key fails with one clear line, and every key
    cached before still answers."""
    floor = subprocess.Popen([str(c_tool("floor_server")), str(tmp_path / "floor.sock"), "150000", "1"])
    try:
        time.sleep(0.3)
        d = Driver(str(tmp_path / "floor.sock"))
        assert d.init()[0] == 0, d.log
        assert d.cmd("range 1 1000")[0] == "0"
        assert d.cmd("limit_memory 3") == ["0"]
        invalid, _ = d.cmd("range 1001 150000", timeout=300)
        assert 0 < int(invalid) < 149000, "some ids fitted, and the rest failed"
        assert d.cmd("range 1 1000")[0] == "0", "keys cached before still answer"
    finally:
        floor.terminate()
        floor.wait()
    d.close()
    assert d.log.count("cannot grow the key cache") == 1, d.log[-2000:]
    assert "the lookup fails; keys already cached stay in use" in d.log


def test_impossible_versions_never_reach_innodb(broker, driver):
    """Before: a LATEST_KEY answer of 0xFFFFFFFF was cached as the latest version (InnoDB aborted
    2 s later) and the warm-up walked down from 0xFFFFFFFE, one GET_KEY per version."""
    assert driver.latest(1)[0] == 1
    rc, key1 = driver.get(1, 1)
    for bad in (INVALID, 0):
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req, v=bad: latest_answer(req, v, b"k" * 32)
        driver.set("version_ttl", 100)
        time.sleep(0.6)  # several refresh passes
        assert driver.latest(1)[0] == 1, "the cached version stays"
        assert driver.get(1, 1) == (0, key1)
        assert driver.latest(40 + bad % 7)[0] == INVALID  # a new key: refused, not cached
    assert f"key broker at {broker.path} sent an impossible answer: version 4294967295" in driver.log
    # A plausible but false latest version: the warm-up stops at the first NOT_FOUND. (The TTL
    # goes back up first: a refresh pass under the new script would walk key 1 down as well.)
    driver.set("version_ttl", 60000)
    broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: latest_answer(req, 0xFFFFFFFE, b"w" * 32)
    get_before = broker.count(kbproto.OP_GET_KEY)
    assert driver.latest(7)[0] == 0xFFFFFFFE
    time.sleep(0.5)
    assert broker.count(kbproto.OP_GET_KEY) - get_before <= 1
    assert driver.status()["answers_refused"] > 0


def test_lower_versions_other_bytes_and_lengths_are_refused(broker, driver):
    broker.add_key(1, versions=3)
    assert driver.latest(1)[0] == 3
    keys = {v: driver.get(1, v)[1] for v in (1, 2, 3)}
    scripts = {
        "lower": lambda b, req: latest_answer(req, 2, b.keys[1][1]),
        "other bytes": lambda b, req: latest_answer(req, 3, b"x" * 32),
        "length 31": lambda b, req: latest_answer(req, 4, b"y" * 31),
        "length 64": lambda b, req: latest_answer(req, 4, b"y" * 64),
    }
    driver.set("version_ttl", 100)
    for name, script in scripts.items():
        broker.script[kbproto.OP_LATEST_KEY] = script
        time.sleep(0.4)
        assert driver.latest(1)[0] == 3, name
        assert all(driver.get(1, v) == (0, keys[v]) for v in keys), name
    log = driver.log
    assert "reports version 2 as the latest of key 1, but this server already uses version 3" in log
    assert "returned other bytes for key 1, version 3" in log
    assert "a key of 31 bytes (AES keys have 16, 24 or 32)" in log


@pytest.mark.parametrize("lie", ["unsent request id", "100 KB frame", "half a frame", "wrong op"])
def test_broken_frames_cost_the_connection_not_the_cache(broker, driver, lie):
    assert driver.latest(1)[0] == 1
    key1 = driver.get(1, 1)[1]
    scripts = {
        "unsent request id": lambda b, req: latest_answer(type(req)(req.op, req.request_id + 100, req.body), 1, b"a" * 32),
        "100 KB frame": lambda b, req: struct.pack(">I", 100_000) + b"\0" * 64,
        "half a frame": lambda b, req: HALF,
        "wrong op": lambda b, req: answer(kbproto.OP_GET_KEY, req.request_id, kbproto.OK, b"\0\0"),
    }
    broker.script[kbproto.OP_LATEST_KEY] = scripts[lie]
    v, ms = driver.latest(2)
    assert v == INVALID and ms < TIMEOUT_MS + 500
    assert driver.latest(1)[0] == 1 and driver.get(1, 1) == (0, key1)
    del broker.script[kbproto.OP_LATEST_KEY]
    time.sleep(0.3)  # past the first reconnect backoff
    assert driver.latest(3)[0] == 1, driver.log


def test_misses_share_one_request_and_one_deadline(broker, driver):
    """Before: six threads missing while the broker hung waited 1.5, 3.0, ... 9.0 s (each took
    broker_lock in turn, each paid the whole timeout)."""
    assert driver.latest(1)[0] == 1
    broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: NEVER
    t0 = time.monotonic()
    same = driver.cmd("threads 6 9 0")  # six threads, all key 9
    wall = time.monotonic() - t0
    results = [tuple(map(float, r.split(":"))) for r in same]
    assert all(v == INVALID for v, _ in results)
    assert max(ms for _, ms in results) <= TIMEOUT_MS + 300 and wall < 2.5, same
    assert broker.count(kbproto.OP_LATEST_KEY, key_id=9) == 1, "one request for all six"
    # Meanwhile cached keys answer: a hit never waits for a miss (which waits 1.5 s here).
    hits, worst_ms = driver.cmd("hits_during_misses 4 100 1000")
    assert int(hits) > 10000 and float(worst_ms) < TIMEOUT_MS / 2, (hits, worst_ms)

    different = [tuple(map(float, r.split(":"))) for r in driver.cmd("threads 6 10 1")]
    assert max(ms for _, ms in different) <= TIMEOUT_MS + 300, different
    # The broker goes away altogether: misses fail at once (most without even trying, until the
    # next reconnect attempt), and say why.
    broker.stop()
    away = [tuple(map(float, r.split(":"))) for r in driver.cmd("threads 50 20 1")]
    assert all(v == INVALID for v, _ in away) and max(ms for _, ms in away) < 300, away
    assert "not asked again until the next reconnect attempt" in driver.log
    assert driver.latest(1)[0] == 1


def test_rotate_waits_at_most_request_timeout_while_the_broker_hangs(broker, driver):
    """SET GLOBAL ..._rotate_key runs under the server's LOCK_global_system_variables."""
    assert driver.latest(3)[0] == 1
    broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: NEVER
    broker.script[kbproto.OP_ROTATE] = lambda b, req: NEVER
    rotate_ms = float(driver.cmd("rotate 3")[0])
    assert rotate_ms <= TIMEOUT_MS + 300
    assert broker.count(kbproto.OP_ROTATE) == 1
    assert "unknown outcome of the rotation of key 3" in driver.log
    assert "keybrokerctl status" in driver.log


def test_rotate_is_sent_once_after_unavailable(broker, driver):
    """Before: one SET GLOBAL sent 6 ROTATE frames (key 1 went from version 1 to 7) and then
    said the broker "did not answer"."""
    assert driver.latest(1)[0] == 1
    broker.script[kbproto.OP_ROTATE] = lambda b, req: failure(req, kbproto.UNAVAILABLE, "KMS timed out")
    driver.cmd("rotate 1")
    assert broker.count(kbproto.OP_ROTATE) == 1
    assert "unknown outcome of the rotation of key 1: the request reached the broker, but " \
           "UNAVAILABLE: KMS timed out" in driver.log
    broker.script[kbproto.OP_ROTATE] = lambda b, req: CLOSE
    driver.cmd("rotate -1")
    assert broker.count(kbproto.OP_ROTATE) == 2, "a lost connection after sending is not retried"


def test_partial_rotation_of_every_key(broker, driver):
    """ROTATE(all) that fails for some keys: the ones rotated are used at once, no error for them."""
    for k in (1, 2, 3):
        assert driver.latest(k)[0] == 1

    def partial(b, req):
        b.add_key(1, 2)
        b.add_key(2, 2)
        body = kbproto.string("rotated 2 of 3 keys; key 3: KMS refused") + struct.pack(">I", 2)
        body += struct.pack(">IIII", 1, 2, 2, 2) + struct.pack(">I", 1) + struct.pack(">IB", 3, kbproto.UNAVAILABLE)
        return answer(req.op, req.request_id, 7, body)

    broker.script[kbproto.OP_ROTATE] = partial
    driver.cmd("rotate -1")
    assert driver.latest(1)[0] == 2 and driver.latest(2)[0] == 2 and driver.latest(3)[0] == 1
    log = driver.log
    assert "rotated key 1 to version 2" in log and "rotated key 2 to version 2" in log
    assert "key 3 was not rotated: UNAVAILABLE" in log
    assert "rotated 2 keys; 1 could not be rotated (broker: rotated 2 of 3 keys; key 3: KMS refused)" in log
    assert broker.count(kbproto.OP_ROTATE) == 1


def test_deinit_is_bounded_while_the_broker_answers_unavailable_slowly(broker, driver):
    """Before: 20 keys, the broker answering UNAVAILABLE after 1 s: deinit took 18.5 s."""
    for k in range(1, 21):
        assert driver.latest(k)[0] == 1
    broker.script[kbproto.OP_LATEST_KEY] = delayed(1.0, lambda b, req: failure(req, kbproto.UNAVAILABLE, "KMS slow"))
    driver.set("version_ttl", 100)
    time.sleep(0.5)  # the refresher is inside a request
    rc, ms = driver.deinit()
    assert rc == 0 and ms <= TIMEOUT_MS + 1000, ms
    assert ms < 500, "the refresher's request is cancelled, not waited for"


def test_deinit_with_lookups_in_flight(broker, driver):
    """Before: deinit freed the broker client while a lookup used it (ASan: use-after-free).
    The ASan build runs this too (test_plugin_sanitizers.py)."""
    assert driver.latest(1)[0] == 1
    broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: NEVER
    broker.script[kbproto.OP_GET_KEY] = lambda b, req: NEVER
    ms, bad = driver.cmd("busy_deinit 4 2 1000")
    assert float(ms) <= TIMEOUT_MS + 1000 and bad == "0"
    assert driver.close() == 0


def test_no_spin_while_the_broker_is_away(broker, driver):
    """Before: with a warm-up pending and the broker away, the refresher skipped its wait: ~30,000
    connect() calls a second and a core at 90 %."""
    broker.add_key(5, versions=3)
    broker.script[kbproto.OP_GET_KEY] = lambda b, req: CLOSE  # older versions cannot be had...
    assert driver.latest(5)[0] == 3
    broker.stop()                                                # ...and the broker goes away
    cpu, wall = map(float, driver.cmd("cpu 4000"))
    assert cpu <= 0.05 * wall, f"{cpu:.3f} s of CPU in {wall:.1f} s"
    assert driver.log.count("lost connection to key broker") == 1
    assert driver.latest(5)[0] == 3
    del broker.script[kbproto.OP_GET_KEY]
    broker.start()
    deadline = time.monotonic() + 10
    while driver.status()["keys_cached"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert driver.status()["keys_cached"] == 3, "the warm-up finished once the broker was back"
    assert driver.log.count("reconnected to key broker") == 1


def test_broker_restart_while_both_connections_are_idle(broker, driver):
    """The broker restarts while nothing is asked: the outage is noticed on the next miss, and the
    refresher's reconnect (a fresh connection, not the stale one) ends it."""
    assert driver.latest(1)[0] == 1
    broker.stop()
    assert driver.latest(2)[0] == INVALID
    broker.start()
    deadline = time.monotonic() + 10
    while not driver.status()["connected"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert driver.status()["connected"] == 1, driver.log
    assert driver.latest(2)[0] == 1
    assert driver.log.count("reconnected to key broker") == 1


def test_oversized_socket_path_and_instance_refuse_to_start(tmp_path):
    """Before: a 108-byte path was cut to 107 and the plugin talked to whatever listened there."""
    short = tmp_path / ("s" * (107 - len(str(tmp_path)) - 1))
    assert len(str(short)) == 107
    impostor = MisbehavingBroker(short).start()
    try:
        d = Driver(str(short) + "x")
        assert d.init()[0] == 1
        d.close()
        assert "keybroker_key_management_socket is 108 bytes long; at most 107 fit" in d.log
        assert impostor.count(kbproto.OP_HELLO) == 0
        d = Driver(str(short), instance="i" * 256)
        assert d.init()[0] == 1
        d.close()
        assert "keybroker_key_management_instance is 256 bytes long; at most 255 fit" in d.log
        d = Driver(str(short), instance="i" * 255)
        assert d.init()[0] == 0
        assert d.latest(1)[0] == 1
        d.close()
    finally:
        impostor.stop()
