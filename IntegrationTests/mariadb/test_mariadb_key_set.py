"""The wrong-key-set guard in a real mariadbd (docs/mariadb.md, "The key set of a datadir").

One broker with two instances on the local provider, "old" and "new", and one server. The
datadir records the key set it was encrypted with on its first start (`keybroker_key_set`); a
broker that serves another one (its state_dir lost, another instance) stops the start with one
line naming both and the switch, before InnoDB asks for a key, so no new key is created for old
data; `keybroker_key_management_adopt_key_set` takes a planned move (rewrap --into); a key set
that changes under a running server is not used (cached keys stay, new keys wait for the right
one).
"""
import shutil

import pytest

import kbproto
from broker import Broker, me
from mariadb_server import ENCRYPTION_OPTIONS, installed_server, wait_until

RECORD = "keybroker_key_set"
ROWS = 500


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    instance = {"provider": "local", "clients": [me()], "master_key_file": str(b.master_key)}
    b.instances = {"old": dict(instance), "new": dict(instance)}
    b.write_config()
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def server(broker, tmp_path_factory):
    s = installed_server(tmp_path_factory.mktemp("mariadb"), broker.socket, start=False, instance="old",
                         options={**ENCRYPTION_OPTIONS, "keybroker-key-management-request-timeout": "2000",
                                  "keybroker-key-management-version-ttl": "500"})
    yield s
    s.stop()


def served_key_set(broker, instance):
    with kbproto.Client(broker.socket) as c:
        assert c.hello(instance).status == kbproto.OK
        r = c.info()
        assert r.status == kbproto.OK, r
        return r.info()["key_set"]


def recorded(server):
    lines = (server.datadir / RECORD).read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith("key_set="))


def every_row_is_read(server):
    assert server.value("SELECT COUNT(*) FROM kb.t1") == str(ROWS)
    assert server.value("SELECT COUNT(*) FROM kb.t5") == str(ROWS)
    assert server.value("SELECT v FROM kb.t5 WHERE id = 321") == "row 321"
    assert server.value("CHECKSUM TABLE kb.t1, kb.t5") is not None


def refused_start(server, *args):
    code, _, log = server.start_to_exit(*args)
    assert code != 0, "mariadbd started"
    return log


def test_the_first_start_records_the_brokers_key_set(broker, server):
    old = served_key_set(broker, "old")
    assert recorded(server) == old, "recorded by mariadb-install-db's bootstrap already"
    assert oct((server.datadir / RECORD).stat().st_mode & 0o777) == "0o640"
    server.start()
    assert f'key set {old} of instance "old", as recorded in {server.datadir}/{RECORD}' in server.new_log()
    assert server.status()["keybroker_key_management_key_set"] == old
    # A datadir without a record (a plugin older than the guard wrote it) records at its next start.
    assert server.stop() == 0
    (server.datadir / RECORD).unlink()
    server.start()
    assert f'recorded key set {old} of instance "old" in {server.datadir}/{RECORD}' in server.new_log()
    assert recorded(server) == old
    values = ", ".join(f"({i}, 'row {i}')" for i in range(1, ROWS + 1))
    server.client("CREATE DATABASE kb; "
                  "CREATE TABLE kb.t1 (id INT PRIMARY KEY, v VARCHAR(50)); "
                  "CREATE TABLE kb.t5 (id INT PRIMARY KEY, v VARCHAR(50)) ENCRYPTION_KEY_ID=5; "
                  f"INSERT INTO kb.t1 VALUES {values}; INSERT INTO kb.t5 VALUES {values}")
    assert server.encryption()["kb/t5"][0] == 5
    every_row_is_read(server)
    assert server.stop() == 0


def test_a_broker_that_lost_its_state_dir_is_refused_and_creates_nothing(broker, server):
    old = recorded(server)
    broker.stop()
    saved = broker.state_dir / "old.saved"
    broker.instance_dir("old").rename(saved)
    broker.start()
    fresh = served_key_set(broker, "old")
    assert fresh != old
    log = refused_start(server)
    line = (f'[ERROR] mariadbd: keybroker_key_management: the broker serves key set {fresh} for instance "old", '
            f"but this datadir was encrypted with key set {old} (its {RECORD}): not starting rather than "
            f"create new keys for old data — give the broker back the store of key set {old}, or, for a "
            f"planned move, start once with keybroker_key_management_adopt_key_set={fresh}\n")
    assert line in log, log[-3000:]
    assert log.count("[ERROR] mariadbd: keybroker_key_management:") == 1, "one line"
    assert [p.name for p in broker.instance_dir("old").iterdir()] == ["key-set"], \
        "no key was created in the new key set for this datadir"
    assert recorded(server) == old, "the record is kept"
    # The broker given its state_dir back: the same datadir starts and reads every row.
    broker.stop()
    shutil.rmtree(broker.instance_dir("old"))
    saved.rename(broker.instance_dir("old"))
    broker.start()
    server.start()
    every_row_is_read(server)
    assert server.stop() == 0


def test_a_planned_move_to_another_key_set_is_adopted_with_the_switch(broker, server):
    old = recorded(server)
    r = broker.ctl("--instance", "old", "rewrap", "--into", "new")
    assert r.returncode == 0, r.stdout + r.stderr
    new = served_key_set(broker, "new")
    assert new != old
    log = refused_start(server, "--keybroker-key-management-instance=new")
    assert f'the broker serves key set {new} for instance "new", but this datadir was encrypted with key set {old}' in log
    # A switch naming another key set adopts nothing.
    log = refused_start(server, "--keybroker-key-management-instance=new",
                        f"--keybroker-key-management-adopt-key-set={old}")
    assert f"adopt_key_set={new}" in log and "adopted" not in log
    server.start("--keybroker-key-management-instance=new", f"--keybroker-key-management-adopt-key-set={new}")
    log = server.new_log()
    assert (f'adopted key set {new} of instance "new" for this datadir, which had key set {old}, as '
            "keybroker_key_management_adopt_key_set says") in log
    assert server.value("SELECT @@keybroker_key_management_adopt_key_set") == new
    every_row_is_read(server)
    assert recorded(server) == new
    # Adopted once: later starts need no switch.
    assert server.stop() == 0
    server.options["keybroker-key-management-instance"] = "new"
    server.write_cnf()
    server.start()
    every_row_is_read(server)


def test_a_key_set_that_changes_under_a_running_server_is_not_used(broker, server):
    new = recorded(server)
    assert server.alive()
    broker.stop()
    saved = broker.state_dir / "new.saved"
    broker.instance_dir("new").rename(saved)
    broker.start()
    assert served_key_set(broker, "new") != new
    every_row_is_read(server)  # cached keys
    r = server.client("CREATE TABLE kb.t77 (id INT) ENCRYPTION_KEY_ID=77", check=False)
    assert r.returncode != 0, "a new key from another key set"
    assert not list(broker.instance_dir("new").glob("local-key.77.*")), "nothing created there"
    assert "changed key sets (the broker serves key set" in server.log_text()
    assert server.alive()
    # The right key set back: new keys work again, without a server restart.
    broker.stop()
    shutil.rmtree(broker.instance_dir("new"))
    saved.rename(broker.instance_dir("new"))
    broker.start()
    wait_until(lambda: server.client("CREATE TABLE kb.t77 (id INT) ENCRYPTION_KEY_ID=77", check=False).returncode == 0,
               timeout=30, message="key 77 created with the right key set back")
    assert list(broker.instance_dir("new").glob("local-key.77.1"))
    every_row_is_read(server)
