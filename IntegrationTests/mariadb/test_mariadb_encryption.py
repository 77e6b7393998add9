"""keybroker_key_management inside a real mariadbd, with a real keybrokerd (local provider).

One broker and one server for the whole module, in this order: install with encryption on,
plaintext absent from disk, rotation, restart, broker restart under write load, a never-cached
key while the broker is away.
"""
import shutil
import threading
import time

import pytest

from mariadb_server import ENCRYPTION_OPTIONS, files_containing, installed_server, wait_until

MARKER = "kb-secret-7f3c9a"
KEY_IDS = (1, 3, 5, 7)  # ENCRYPTION_KEY_ID of the tables t1, t3, t5, t7


@pytest.fixture(scope="module")
def server(broker, tmp_path_factory):
    s = installed_server(tmp_path_factory.mktemp("mariadb"), broker.socket,
                         options={**ENCRYPTION_OPTIONS,
                                  "keybroker-key-management-request-timeout": "2000",
                                  "keybroker-key-management-version-ttl": "300"})
    yield s
    s.stop()


def test_install_db_and_start_with_encryption_on(server, broker):
    plugin = server.rows("SELECT PLUGIN_STATUS, PLUGIN_TYPE, PLUGIN_MATURITY, LOAD_OPTION "
                         "FROM information_schema.PLUGINS "
                         "WHERE PLUGIN_NAME = 'keybroker_key_management'")
    assert plugin == [("ACTIVE", "ENCRYPTION", "Stable", "FORCE_PLUS_PERMANENT")]
    # Everything mariadb-install-db created is already encrypted with key 1, version 1.
    spaces = server.encryption()
    assert "innodb_system" in spaces and "mysql/innodb_table_stats" in spaces
    assert all(v == (1, 1, 1) for v in spaces.values()), spaces
    log = server.log_text()
    assert f"keybroker_key_management: connected to key broker at {broker.socket} " \
           f'(instance "default", protocol 1, server "keybrokerd' in log
    assert "keybroker_key_management: loaded key 1, version 1, key length 256 bit" in log
    assert "Using encryption key id 2 for temporary files" in log
    status = server.status()
    assert status["keybroker_key_management_connected"] == "ON"
    assert int(status["keybroker_key_management_keys_cached"]) >= 2
    assert int(status["keybroker_key_management_cache_hits"]) > 0


def test_plaintext_absent_from_disk(server):
    server.client("CREATE DATABASE kb")
    for k in KEY_IDS:
        server.client(f"CREATE TABLE kb.t{k} (id INT PRIMARY KEY, v VARCHAR(100)) "
                      f"ENCRYPTION_KEY_ID={k}")
    server.client("CREATE TABLE kb.plain (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTED=NO")
    rows = ",".join(f"({i}, '{MARKER}-{i}')" for i in range(1, 301))
    for table in [f"t{k}" for k in KEY_IDS] + ["plain"]:
        server.client(f"INSERT INTO kb.{table} VALUES {rows}")
    # A filesort that spills to disk goes through encrypt_tmp_files (key 2).
    server.client("SET SESSION sort_buffer_size=16384; "
                  "SELECT COUNT(*) FROM (SELECT v FROM kb.t1 ORDER BY REVERSE(v) LIMIT 299) s")
    # Write every page out: FOR EXPORT flushes the tables; the redo log holds the inserts.
    server.client("FLUSH TABLES kb.t1, kb.t3, kb.t5, kb.t7, kb.plain FOR EXPORT; UNLOCK TABLES")

    spaces = server.encryption()
    for k in KEY_IDS:
        assert spaces[f"kb/t{k}"] == (k, 1, 1)
    assert "kb/plain" not in spaces or spaces["kb/plain"][1] == 0

    hits = files_containing(server.datadir, MARKER.encode())
    assert hits == [server.datadir / "kb" / "plain.ibd"], hits
    assert (server.datadir / "ib_logfile0").exists()
    for k in KEY_IDS:
        assert f"loaded key {k}, version 1, key length 256 bit" in server.log_text()


def checksum(server):
    return server.rows("CHECKSUM TABLE kb.t1, kb.t3, kb.t5, kb.t7, kb.plain")


def test_rotate_key_3_then_every_key(server, broker):
    before = server.encryption()
    assert before["kb/t3"][2] == 1
    server.client("SET GLOBAL keybroker_key_management_rotate_key = 3")
    after = server.encryption()
    assert after["kb/t3"][2] == 2, "InnoDB sees key 3's new version at once"
    assert after["kb/t5"][2] == 1
    assert "keybroker_key_management: rotated key 3 to version 2" in server.log_text()
    assert int(server.value("SELECT @@keybroker_key_management_rotate_key")) == 0

    # -1 twice: InnoDB re-encrypts pages more than innodb_encryption_rotate_key_age (1) versions old.
    server.client("SET GLOBAL keybroker_key_management_rotate_key = -1")
    server.client("SET GLOBAL keybroker_key_management_rotate_key = -1")
    after = server.encryption()
    assert after["kb/t3"][2] == 4 and after["kb/t5"][2] == 3 and after["innodb_system"][2] == 3
    latest = dict(line.split()[:2] for line in broker.ctl("list").stdout.splitlines()[1:] if line)
    assert latest["3"] == "4" and latest["5"] == "3", latest

    # MariaDB 10.6+ encryption threads sleep until a setting changes; this wakes them.
    server.client("SET GLOBAL innodb_encryption_rotate_key_age = @@innodb_encryption_rotate_key_age")
    def reencrypted():
        spaces = {k: v for k, v in server.encryption().items() if k != "kb/plain"}
        return spaces if all(v[1] >= 3 for v in spaces.values()) else None

    done = wait_until(reencrypted, timeout=60, message="re-encryption with the new key versions")
    assert done["kb/t3"][1] >= 3 and done["kb/t5"][1] == 3 and done["innodb_system"][1] == 3


def test_restart_reads_every_row_back(server):
    expected = checksum(server)
    server.restart()
    assert checksum(server) == expected
    for k in KEY_IDS:
        assert server.value(f"SELECT COUNT(*) FROM kb.t{k} WHERE v LIKE '{MARKER}-%'") == "300"
    spaces = server.encryption()
    assert spaces["kb/t3"][2] == 4 and spaces["kb/t5"][2] == 3
    assert server.status()["keybroker_key_management_reconnects"] == "0"


def test_broker_restart_under_write_load(server, broker):
    server.client("SET GLOBAL innodb_max_dirty_pages_pct = 0")  # page writes all the time
    reconnects = int(server.status()["keybroker_key_management_reconnects"])
    failures, done = [], threading.Event()
    count = [0]

    def writer():
        i = 1000
        while not done.is_set():
            i += 1
            sql = "; ".join(f"INSERT INTO kb.t{k} VALUES ({i}, '{MARKER}-{i}')" for k in KEY_IDS)
            r = server.client(sql + "; SELECT COUNT(*) FROM kb.t3", check=False)
            if r.returncode != 0:
                failures.append(r.stderr)
            count[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(1)
        assert broker.stop() == 0
        time.sleep(2)  # several version_ttl periods without a broker
        assert server.alive()
        broker.start()
        wait_until(lambda: int(server.status()["keybroker_key_management_reconnects"]) > reconnects,
                   timeout=15, message="the plugin to reconnect")
        time.sleep(1)
    finally:
        done.set()
        t.join()
    assert failures == []
    assert count[0] > 10
    assert server.alive()
    log = server.log_text()
    assert f"lost connection to key broker at {broker.socket}" in log
    assert "reconnected to key broker at" in log
    assert server.status()["keybroker_key_management_connected"] == "ON"


def test_key_never_seen_while_broker_away(server, broker):
    """InnoDB refuses the statement that needs the key; the server keeps running."""
    assert broker.stop() == 0
    try:
        t0 = time.time()
        r = server.client("CREATE TABLE kb.t99 (id INT) ENCRYPTION_KEY_ID=99", check=False)
        elapsed = time.time() - t0
        assert r.returncode != 0
        assert "Can't create table `kb`.`t99` (errno: 140 \"Wrong create options\")" in r.stderr
        # Bounded by request_timeout (2000 ms); here at once, since the socket is gone.
        assert elapsed < 2.5, elapsed
        assert server.alive()
        assert f"cannot reach key broker at {broker.socket}: " in server.log_text()
        assert "is keybroker.socket active?" in server.log_text()
        # Keys seen before still work.
        server.client(f"INSERT INTO kb.t5 VALUES (99999, '{MARKER}')")
    finally:
        broker.start()
    # Misses fail at once until the plugin's next reconnect attempt (at most 5 s later).
    wait_until(lambda: server.status()["keybroker_key_management_connected"] == "ON", timeout=15,
               message="the plugin to reconnect")
    server.client("CREATE TABLE kb.t99 (id INT) ENCRYPTION_KEY_ID=99")
    assert server.encryption()["kb/t99"][0] == 99


def test_old_key_versions_are_cached_so_the_broker_may_leave(server, broker):
    """Pages still under an old key version stay readable with the broker gone: the plugin
    caches every version of a key it has seen. (InnoDB marks a table corrupted, until restart,
    when a page's key cannot be had.)"""
    server.client("CREATE TABLE kb.old (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTION_KEY_ID=11; "
                  f"INSERT INTO kb.old VALUES (1, '{MARKER}'); "
                  "FLUSH TABLES kb.old FOR EXPORT; UNLOCK TABLES")
    server.client("SET GLOBAL keybroker_key_management_rotate_key = 11; "
                  "SET GLOBAL keybroker_key_management_rotate_key = 11")
    # Pages on disk stay at version 1: no re-encryption, and the restart asks for version 3 only.
    server.restart("--innodb-encryption-rotate-key-age=100", "--innodb-buffer-pool-load-at-startup=OFF")
    assert server.encryption()["kb/old"] == (11, 1, 3)
    wait_until(lambda: "loaded key 11, version 1," in server.new_log(), timeout=10,
               message="version 1 of key 11 to be cached")
    assert broker.stop() == 0
    try:
        assert server.value("SELECT v FROM kb.old WHERE id = 1") == MARKER
    finally:
        broker.start()


def test_replaced_broker_state_is_reported(server, broker):
    """A broker that comes back with other keys (state_dir lost, so another key set) is reported
    and not used; cached keys stay (test_mariadb_key_set.py has the rest of the guard)."""
    assert broker.stop() == 0
    state = broker.state_dir
    saved = state.with_name("state.saved")
    state.rename(saved)
    try:
        broker.start()  # a new key set, where auto_create would make a new version 1 of key 1
        wait_until(lambda: "is back with another key set" in server.log_text(),
                   timeout=15, message="the plugin to notice the replaced state")
        assert not list(broker.instance_dir().glob("local-key.*")), "no key asked of it"
        assert server.alive()
        server.client(f"INSERT INTO kb.t7 VALUES (77777, '{MARKER}')")
        assert server.value("SELECT COUNT(*) FROM kb.t7 WHERE id = 77777") == "1"
    finally:
        assert broker.stop() == 0
        shutil.rmtree(state)
        saved.rename(state)
        broker.start()
