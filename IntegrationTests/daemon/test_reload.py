"""Reload (issue 16 item 1): SIGHUP re-reads keybroker.toml and applies it whole or not at all,
without dropping a connection or a request in flight."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

import kbproto
from broker import KEYBROKERCTL, Broker, me, write_master_key
from localusers import LocalUsers
from sdnotify import NotifyListener

ATTACKER = os.path.join(os.path.dirname(__file__), "..", "security", "attacker.py")


@pytest.fixture(scope="module")
def users():
    u = LocalUsers("r")
    names = {"newcomer": u.user("newcomer").pw_name}
    yield u, names
    u.cleanup()


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def reload(b, expect):
    """SIGHUP, then wait for the line that says how it ended."""
    before = b.log_text().count(expect)
    b.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b.log_text().count(expect) > before, what=expect)


def start(workdir, name, notify=True, **extra):
    b = Broker(workdir / name, extra=extra or None)
    env = dict(os.environ)
    if notify:
        b.notifications = NotifyListener(b.dir / "notify.sock")
        env["NOTIFY_SOCKET"] = b.notifications.path
    b.start(env=env)
    os.chmod(b.socket, 0o666)
    return b


def connect_as(users, role, b, instance="default"):
    u, names = users
    out = subprocess.run(u.python(names[role], ATTACKER, "connect", b.socket, instance), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Load:
    """16 clients, each on one connection for the whole test, asking for keys without a pause."""

    def __init__(self, b, clients=16):
        self.stop = threading.Event()
        self.failures = []
        self.counts = [0] * clients
        self.threads = [threading.Thread(target=self.run, args=(b, i), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, b, index):
        try:
            with kbproto.Client(b.socket) as c:
                assert c.hello().status == kbproto.OK
                n = 0
                while not self.stop.is_set():
                    key_id = 1 + (index * 7 + n) % 40
                    r = c.latest(key_id) if n % 2 else c.get(key_id, 1)
                    if r.status != kbproto.OK:
                        self.failures.append((index, key_id, repr(r)))
                    n += 1
                    self.counts[index] = n
        except Exception as e:  # a dropped connection is a failure too
            self.failures.append((index, "exception", repr(e)))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        return sum(self.counts)


def test_an_instance_and_a_client_added_under_load_from_16_clients_without_a_failed_request(workdir, users):
    _, names = users
    b = start(workdir, "add")
    try:
        with kbproto.Client(b.socket) as c:  # versions 1 exist before the load asks GET_KEY for them
            c.hello()
            for key_id in range(1, 41):
                assert c.latest(key_id).status == kbproto.OK
        assert connect_as(users, "newcomer", b)["status"] == "closed", "not a client yet"
        load = Load(b)
        wait_for(lambda: sum(load.counts) > 500, what="load")
        second_key = write_master_key(b.dir / "second.key")
        b.instances["second"] = {"provider": "local", "clients": [me(), names["newcomer"]], "master_key_file": str(second_key)}
        b.instances["default"]["clients"] = [me(), names["newcomer"]]
        b.top["max_in_flight_per_connection"] = 32
        b.top["log_level"] = "debug"
        b.write_config()
        before = sum(load.counts)
        reload(b, "reloaded ")
        log = b.log_text()
        assert "added second" in log and "clients of [instances.default]: +uid" in log and "limits changed" in log, log
        assert connect_as(users, "newcomer", b) == {"status": "OK", "latest": "OK"}
        assert connect_as(users, "newcomer", b, "second") == {"status": "OK", "latest": "OK"}
        with kbproto.Client(b.socket) as c:
            assert c.hello("second").status == kbproto.OK
            assert c.latest(1).status == kbproto.OK
        wait_for(lambda: sum(load.counts) > before + 500, what="load after the reload")
        served = load.finish()
        print(f"reload under load: {served} requests from 16 connections, {before} before the reload, {len(load.failures)} failed")
        assert load.failures == [], load.failures[:5]
        assert all(n > 0 for n in load.counts)
        assert served > 1000
        assert "debug: " in b.log_text().split("reloaded ")[-1], "log_level debug in force after the reload"
        status = b.notifications.drain()
        assert "RELOADING=1" in status and "READY=1" in status[status.index("RELOADING=1"):], status
    finally:
        b.stop()


def test_a_config_that_does_not_check_keeps_the_running_one_and_is_reported(workdir):
    b = start(workdir, "broken")
    try:
        with kbproto.Client(b.socket) as held:
            assert held.hello().status == kbproto.OK
            assert held.latest(1).status == kbproto.OK
            good = b.config_path.read_text()
            for broken, reason in [
                (good + "\n[instances.other]\nprovider = \"local\"\nmaster_key_file = \"/nonexistent/key\"\n", "/nonexistent/key"),
                (good.replace("log_level = \"info\"", "log_level = \"loud\""), "log_level"),
                (good + "\nmax_connections = \"many\"\n", "max_connections"),
                (good.replace(f'clients = ["{me()}"]', 'clients = ["no-such-user-kb16"]'), "no-such-user-kb16"),
                (good + "\n[instances.x\n", "line"),
            ]:
                b.config_path.write_text(broken)
                reload(b, "reload failed")
                line = [l for l in b.log_text().splitlines() if "reload failed" in l][-1]
                assert reason in line, line
                assert held.latest(2).status == kbproto.OK, "the held connection is still served"
                with kbproto.Client(b.socket) as fresh:
                    assert fresh.hello().status == kbproto.OK and fresh.latest(1).status == kbproto.OK
                doc = json.loads(held.status().message)
                assert doc["reload"]["last_error"] and reason in doc["reload"]["last_error"], doc["reload"]
                # A file that does not check may not name the socket either: keybrokerctl is told where.
                out = subprocess.run([str(KEYBROKERCTL), "--socket", b.socket, "status"], capture_output=True, text=True, timeout=30)
                assert "reload failed" in out.stdout and reason in out.stdout, out.stdout + out.stderr
                notes = " ".join(b.notifications.drain())
                assert "STATUS=reload failed" in notes and reason in notes, notes
                assert "other" not in doc["instances"]
            b.config_path.write_text(good)
            reload(b, "reloaded ")
            doc = json.loads(held.status().message)
            assert doc["reload"]["last_error"] is None and doc["reload"]["failed"] == 5 and doc["reload"]["succeeded"] == 1
    finally:
        b.stop()


def test_a_removed_instance_is_refused_afterwards_and_its_keys_are_zeroed(workdir):
    b = Broker(workdir / "remove")
    second_key = write_master_key(b.dir / "second.key")
    b.instances["second"] = {"provider": "local", "clients": [me()], "master_key_file": str(second_key)}
    b.write_config()
    b.start()
    try:
        with kbproto.Client(b.socket) as default, kbproto.Client(b.socket) as bound:
            assert default.hello().status == kbproto.OK and default.latest(1).status == kbproto.OK
            assert bound.hello("second").status == kbproto.OK
            for key_id in (1, 2, 3):
                assert bound.latest(key_id).status == kbproto.OK
            del b.instances["second"]
            b.write_config()
            reload(b, "reloaded ")
            assert "removed second" in b.log_text()
            assert 'instance "second" removed: 3 unwrapped keys zeroed' in b.log_text()
            assert bound.closed_by_peer(), "a connection bound to the removed instance is closed"
            assert default.latest(1).status == kbproto.OK, "the other instance's connection stays"
        with kbproto.Client(b.socket) as c:
            r = c.hello("second")
            assert r.status == kbproto.DENIED and "not configured" in r.message
    finally:
        b.stop()


def test_a_changed_instance_moves_its_connections_to_the_new_store(workdir):
    b = Broker(workdir / "change")
    b.start()
    try:
        with kbproto.Client(b.socket) as c:
            assert c.hello().status == kbproto.OK
            v1 = c.latest(1).key()
            b.instances["default"]["auto_create"] = False
            b.write_config()
            reload(b, "reloaded ")
            assert "changed default" in b.log_text()
            assert c.get(1, 1).key_bytes() == v1[1], "same key on the same connection, from the new store"
            r = c.latest(99)
            assert r.status == kbproto.NOT_FOUND, "auto_create = false is in force on the open connection"
    finally:
        b.stop()
