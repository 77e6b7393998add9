"""The plugin's lookup contract, checked outside mariadbd: IntegrationTests/plugin/plugin_harness.c loads the .so the
way the server does (dlopen, service pointers, system variables, init) against a real keybrokerd.

- the descriptor: encryption plugin, GPL, stable, the server's own crypt functions;
- get_key's buffer protocol: size query with a NULL buffer, ENCRYPTION_KEY_BUFFER_TOO_SMALL with
  the needed length, the key bytes are the broker's, INVALID for an unknown version or key id 0;
- a cached lookup makes no system call: a million of them in a thread under seccomp strict mode;
- a lookup of a key never seen, with the broker gone, fails within request_timeout and does not
  hold up cached lookups, and a cached latest version outlives its TTL while the broker is away.
"""
import subprocess

import pytest

import kbproto
from broker import Broker, ROOT, me
from mariadb_server import PLUGIN_SO, build_plugin
from tools import c_tool

ENCRYPTION_KEY_VERSION_INVALID = 0xFFFFFFFF
ENCRYPTION_KEY_BUFFER_TOO_SMALL = 100


@pytest.fixture(scope="module")
def harness():
    build_plugin()
    return c_tool("plugin_harness")


def parse(text):
    return {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}


def test_lookup_contract(harness, tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.instances["default"]["auto_create"] = True
    broker.write_config()
    broker.start()
    proc = subprocess.Popen([str(harness), str(PLUGIN_SO), broker.socket], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = ""
        while not first.startswith("strict_mode_hits") and proc.poll() is None:
            line = proc.stdout.readline()
            first += line if line else ""
            if line.startswith("strict_mode_hits") or not line:
                break
        r = parse(first)
        assert "strict_mode_hits" in r, f"harness died (seccomp kill?): {proc.wait()}\n{first}\n" \
                                         f"{proc.stderr.read()}"
        with kbproto.Client(broker.socket) as c:
            assert c.hello("default", me()).status == kbproto.OK
            expected = c.get(1, 1).key_bytes().hex()
        broker.stop()
        rest, err = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()
    r.update(parse(rest))
    assert proc.returncode == 0, err

    assert r["interface"] == ["1"] and r["name"] == ["keybroker_key_management"]
    assert r["type"] == ["1"] and r["license"] == ["1"] and r["maturity"] == ["1"]
    assert r["crypt_functions_null"] == ["1"]
    assert r["init"] == ["0"]
    assert r["latest_1"] == ["1"]
    assert r["latest_0"] == [str(ENCRYPTION_KEY_VERSION_INVALID)]
    assert r["size_query"] == [str(ENCRYPTION_KEY_BUFFER_TOO_SMALL), "32"]
    assert r["small_buffer"] == [str(ENCRYPTION_KEY_BUFFER_TOO_SMALL), "32"]
    assert r["get_key"] == ["0", "32", expected]
    assert r["untouched_tail"] == ["1"]
    assert r["unknown_version"] == [str(ENCRYPTION_KEY_VERSION_INVALID)]
    assert r["strict_mode_hits"] == ["1000000"]

    miss_result, miss_seconds = r["miss"]
    assert int(miss_result) == ENCRYPTION_KEY_VERSION_INVALID
    # The socket is gone, so the connect fails at once: no need to wait request_timeout (1500 ms).
    assert float(miss_seconds) < 1.6, "a miss fails within request_timeout"
    assert int(r["hits_during_miss"][0]) > 10000
    # Loose on purpose: on a loaded 2-core machine a thread can be descheduled for a few hundred
    # ms; a hit held up by a miss is caught in test_plugin_misbehaving_broker.py, where the miss
    # hangs for request_timeout.
    assert float(r["worst_hit_seconds"][0]) < 1.0
    assert r["latest_1_past_ttl"] == ["1"]
    assert r["deinit"] == ["0"]
    assert "keybroker_key_management: cannot reach key broker at" in err
