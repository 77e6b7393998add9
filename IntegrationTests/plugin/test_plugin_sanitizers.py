"""The plugin and its driver built with AddressSanitizer + UBSan, and with ThreadSanitizer
(`make plugin-test-tools`), under a concurrent stress: readers over 64 keys, rotations, TTL and
request_timeout changes through SET GLOBAL's path, while the broker (IntegrationTests/support/misbehaving_broker.py,
a fake only because it must be stopped and started many times a second) goes away and comes back.
Then deinit with lookups in flight. A single sanitizer report fails the test.
"""
import os
import threading
import time

import pytest

import kbproto
from misbehaving_broker import NEVER, MisbehavingBroker
from plugin_driver import Driver

REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")
SANITIZER_ENV = {**os.environ,
                 "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
                 "TSAN_OPTIONS": "halt_on_error=0:second_deadlock_stack=1"}


def restarts(broker, stop, period):
    while not stop.is_set():
        time.sleep(period)
        broker.stop()
        time.sleep(period / 3)
        broker.start()


@pytest.mark.parametrize("variant", ["asan", "tsan"])
def test_concurrent_stress_without_reports(tmp_path, variant):
    broker = MisbehavingBroker(tmp_path / "mb.sock").start()
    d = Driver(broker.path, variant=variant, env=SANITIZER_ENV, request_timeout=500, version_ttl=100)
    stop = threading.Event()
    churn = threading.Thread(target=restarts, args=(broker, stop, 0.4))
    try:
        assert d.init()[0] == 0, d.log
        churn.start()
        bad, calls = d.cmd("stress 4000 6 64", timeout=300)
        stop.set()
        churn.join()
        assert bad == "0", "a cached key came back INVALID or with other bytes"
        assert int(calls) > 10000
        # deinit while misses wait for a broker that never answers, and hits go on
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: NEVER
        ms, bad = d.cmd("busy_deinit 4 2 5000")
        assert bad == "0" and float(ms) <= 1500 + 1000
    finally:
        stop.set()
        code = d.close()
        broker.stop()
    reports = [line for line in d.err_lines if any(r in line for r in REPORTS)]
    assert not reports, "\n".join(d.err_lines[-200:])
    assert code == 0, d.log[-4000:]
    assert "rotated key" in d.log and "reconnected to key broker" in d.log


@pytest.mark.parametrize("variant,ids", [("", 100_000), ("tsan", 20_000)])
def test_key_cache_grows_to_a_million_entries_under_readers(variant, ids):
    """IntegrationTests/plugin/key_cache_test.c: 100,000 ids × 10 versions (1,000,000 entries) published while three
    readers look up everything published so far; the ThreadSanitizer build with fewer ids."""
    import subprocess
    from plugin_driver import TOOLS
    binary = TOOLS / ("key_cache_test" + (f"-{variant}" if variant else ""))
    cmd = ([] if not variant else ["setarch", "-R"]) + [str(binary), str(ids), "10", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=SANITIZER_ENV)
    assert r.returncode == 0 and r.stdout.startswith(f"ok {ids} {ids * 10}"), r.stdout + r.stderr[-4000:]
    assert not any(rep in r.stderr for rep in REPORTS), r.stderr[-4000:]
