"""Who gets which keys, and what mariadbd does when the broker is missing, says no, or closes
idle connections.

One broker with three instances: "a" and "b" for this user, "locked" for nobody; no admins, so
the broker's own access rules decide; idle connections are closed after a second. Two servers:
A on instance "a", B on instance "b".
"""
import json
import os
import time

import pytest

import kbproto
from broker import Broker, me
from mariadb_server import ENCRYPTION_OPTIONS, MariaDB, require_mariadb_and_plugin, wait_until

SERVER_OPTIONS = {**ENCRYPTION_OPTIONS, "keybroker-key-management-request-timeout": "2000"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"), extra={"admins": [], "idle_timeout_ms": 1000})
    instance = {"provider": "local", "clients": [me()], "auto_create": True,
                "master_key_file": str(b.master_key)}
    b.instances = {"a": dict(instance), "b": dict(instance),
                   "locked": {**instance, "clients": ["nobody"]}}
    b.write_config()
    b.start()
    yield b
    b.stop()


def make_server(tmp_path_factory, broker, instance, name):
    s = MariaDB(tmp_path_factory.mktemp(name), broker.socket, instance=instance,
                options=SERVER_OPTIONS)
    s.install()
    return s


@pytest.fixture(scope="module")
def servers(broker, tmp_path_factory):
    require_mariadb_and_plugin()
    a = make_server(tmp_path_factory, broker, "a", "mariadb-a")
    b = make_server(tmp_path_factory, broker, "b", "mariadb-b")
    yield a, b
    a.stop()
    b.stop()


def broker_key(broker, instance, key_id, version):
    with kbproto.Client(broker.socket) as c:
        assert c.hello(instance, "pytest").status == kbproto.OK
        r = c.get(key_id, version)
        assert r.status == kbproto.OK, r
        return r.key_bytes()


def test_two_instances_get_different_keys(servers, broker):
    a, b = servers
    a.start()
    b.start()
    for s in (a, b):
        s.client("CREATE DATABASE kb; CREATE TABLE kb.t (id INT PRIMARY KEY, v TEXT) "
                 "ENCRYPTION_KEY_ID=6; INSERT INTO kb.t VALUES (1, 'one'), (2, 'two')")
        assert s.encryption()["kb/t"] == (6, 1, 1)
    assert 'instance "a"' in a.log_text() and 'instance "b"' in b.log_text()
    assert (broker.instance_dir("a")).is_dir() and (broker.instance_dir("b")).is_dir()
    for key_id in (1, 6):
        assert broker_key(broker, "a", key_id, 1) != broker_key(broker, "b", key_id, 1)
    # In the server: A's datadir is refused instance b's key set before InnoDB reads a page with
    # them (test_mariadb_key_set.py has the rest of the guard).
    assert a.stop() == 0
    code, _, log = a.start_to_exit("--keybroker-key-management-instance=b")
    assert code != 0
    assert 'the broker serves key set ' in log and 'for instance "b", but this datadir was encrypted with key set' in log
    a.start()
    assert a.value("SELECT v FROM kb.t WHERE id = 2") == "two"


def test_connection_closed_while_idle_is_replaced_quietly(servers, broker):
    _, b = servers
    reconnects = int(b.status()["keybroker_key_management_reconnects"])
    # The broker closes both servers' idle connections (idle_timeout_ms = 1000): wait until no
    # connection but the one asking is open (the log cannot tell: one line per uid per interval,
    # and closes from earlier tests count too).
    def only_this_connection_open():
        with kbproto.Client(broker.socket) as c:
            assert c.hello("a", "pytest").status == kbproto.OK
            return json.loads(c.status().message)["connections"] == 1

    wait_until(only_this_connection_open, timeout=15,
               message="the broker to close the idle connections")
    b.client("CREATE TABLE kb.t8 (id INT) ENCRYPTION_KEY_ID=8; INSERT INTO kb.t8 VALUES (1)")
    assert b.encryption()["kb/t8"][0] == 8
    assert int(b.status()["keybroker_key_management_reconnects"]) > reconnects
    assert "lost connection" not in b.log_text()
    assert "[ERROR]" not in b.log_text()


def test_instance_not_allowed_for_the_servers_uid_is_refused(servers, broker, tmp_path):
    s = MariaDB(tmp_path / "locked", broker.socket, instance="locked", options=SERVER_OPTIONS)
    s.datadir.mkdir()  # the plugin refuses before InnoDB would look at the datadir
    s.start(wait=False)
    assert s.wait_exit(30) != 0
    assert (f'keybroker_key_management: broker denied instance "locked" to uid {os.geteuid()} '
            f'— add the user to clients') in s.log_text()
    assert "Plugin 'keybroker_key_management' init function returned error" in s.log_text()


def test_server_waits_for_a_broker_that_comes_in_time(servers, broker):
    a, _ = servers
    assert a.stop() == 0
    assert broker.stop() == 0
    t0 = time.time()
    a.start("--keybroker-key-management-startup-timeout=30", wait=False)
    time.sleep(3)
    assert a.alive(), a.new_log()
    assert f"key broker at {broker.socket} is not available yet" in a.new_log()
    assert "waiting up to 30 s" in a.new_log()
    assert "ready for connections" not in a.new_log()
    broker.start()
    a.wait_ready(30)
    assert time.time() - t0 >= 3
    assert a.value("SELECT v FROM kb.t WHERE id = 1") == "one"
    assert f"connected to key broker at {broker.socket}" in a.new_log()


def test_server_fails_when_the_broker_never_comes(servers, broker):
    a, _ = servers
    assert a.stop() == 0
    assert broker.stop() == 0
    try:
        code, elapsed, log = a.start_to_exit("--keybroker-key-management-startup-timeout=3")
        assert code != 0
        assert 3 <= elapsed < 15, elapsed
        assert f"keybroker_key_management: cannot reach key broker at {broker.socket}: " in log
        assert "— is keybroker.socket active?" in log
        assert "ready for connections" not in log
    finally:
        broker.start()
    a.start()
    assert a.value("SELECT COUNT(*) FROM kb.t") == "2"
