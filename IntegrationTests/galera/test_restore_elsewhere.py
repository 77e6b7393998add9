"""mariadb-backup taken on one "host" and restored on another (issue 13): a fresh datadir, a fresh
broker with an empty state dir, the same S3 bucket (moto_server, signatures checked;
support/s3store.py). The restore reads every row. The same backup restored against a broker on
another prefix (another key set, as a host pointed at the wrong store) is refused at start by the
key-set guard, with the line naming both key sets; the adopt switch is not what fixes that, the
right store is.

Hosts differ here by directory only: each has its own broker socket, state dir and datadir. On
real hosts the socket path is the same everywhere, so the test rewrites backup-my.cnf's socket to
the restore host's, as that file would already say there.
"""
import re
import shutil
import subprocess

import pytest

import kbproto
from broker import me, write_master_key
from mariadb_server import ENCRYPTION_OPTIONS, MariaDB, files_containing, installed_server
from s3store import s3_moto_fixture, store_broker

ROWS = 3000
MARKER = "restore-elsewhere-plaintext"


moto = s3_moto_fixture()


@pytest.fixture(scope="module")
def master_key(workdir):
    return write_master_key(workdir / "restore-master.key")


def backup_tool(*args):
    r = subprocess.run(["mariadb-backup", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"mariadb-backup {' '.join(args)} failed:\n{r.stderr[-4000:]}"
    return r


def key_set(broker):
    with kbproto.Client(broker.socket) as c:
        assert c.hello().status == kbproto.OK
        return c.info().info()["key_set"]


@pytest.fixture(scope="module")
def backup(workdir, moto, master_key, tmp_path_factory):
    """Host A: a broker on the bucket, a server with tables on two new key ids, one rotated; a full
    backup. Host A is gone afterwards (broker stopped, state dir removed)."""
    a = store_broker(workdir, "host-a", moto, master_key, prefix="restore")
    a.start(env=moto.account.env())
    server = installed_server(tmp_path_factory.mktemp("host-a"), a.socket, options=ENCRYPTION_OPTIONS)
    values = ", ".join(f"({i}, '{MARKER} {i}')" for i in range(1, ROWS + 1))
    server.script("CREATE DATABASE kb; "
                  "CREATE TABLE kb.t31 (id INT PRIMARY KEY, v VARCHAR(80)) ENCRYPTION_KEY_ID=31; "
                  "CREATE TABLE kb.t32 (id INT PRIMARY KEY, v VARCHAR(80)) ENCRYPTION_KEY_ID=32; "
                  f"INSERT INTO kb.t31 VALUES {values}; INSERT INTO kb.t32 VALUES {values}; "
                  "SET GLOBAL keybroker_key_management_rotate_key = 31;")
    server.client(f"INSERT INTO kb.t31 VALUES ({ROWS + 1}, '{MARKER} after rotation')")
    expected = server.rows("CHECKSUM TABLE kb.t31, kb.t32")
    target = tmp_path_factory.mktemp("backup") / "full"
    backup_tool(f"--defaults-file={server.cnf}", "--backup", f"--target-dir={target}",
                f"--socket={server.socket}", f"--user={me()}")
    assert files_containing(target / "kb", MARKER.encode()) == [], "the backup is encrypted"
    origin = key_set(a)
    assert server.stop() == 0
    assert a.stop() == 0
    shutil.rmtree(a.dir)
    return {"target": target, "expected": expected, "socket": a.socket, "key_set": origin}


def restore_on(host_broker, backup, tmp_path_factory, name):
    """--prepare with the host's broker, --copy-back into a fresh datadir; the server, not started."""
    target = tmp_path_factory.mktemp(name) / "full"
    shutil.copytree(backup["target"], target)
    cnf = target / "backup-my.cnf"
    cnf.write_text(re.sub(r"(keybroker_key_management_socket=).*", rf"\g<1>{host_broker.socket}", cnf.read_text()))
    r = backup_tool("--prepare", f"--target-dir={target}")
    server = MariaDB(tmp_path_factory.mktemp(f"{name}-server"), host_broker.socket, options=ENCRYPTION_OPTIONS)
    backup_tool(f"--defaults-file={server.cnf}", "--copy-back", f"--target-dir={target}")
    return server, r


def test_a_backup_restored_on_another_host_with_an_empty_state_dir_reads_every_row(workdir, moto, master_key, backup,
                                                                                     tmp_path_factory):
    b = store_broker(workdir, "host-b", moto, master_key, prefix="restore")
    assert not b.state_dir.exists()
    b.start(env=moto.account.env())
    try:
        assert key_set(b) == backup["key_set"]
        server, prepared = restore_on(b, backup, tmp_path_factory, "host-b")
        assert "keybroker_key_management: connected to key broker" in prepared.stderr
        server.start()
        try:
            assert server.rows("CHECKSUM TABLE kb.t31, kb.t32") == backup["expected"]
            assert server.value("SELECT COUNT(*) FROM kb.t31") == str(ROWS + 1)
            assert server.value(f"SELECT v FROM kb.t32 WHERE id = {ROWS}") == f"{MARKER} {ROWS}"
            assert server.encryption()["kb/t31"][0] == 31
            assert server.status()["keybroker_key_management_key_set"] == backup["key_set"]
        finally:
            server.stop()
        assert sorted(p.name for p in b.instance_dir().glob("local-key.3*")) == \
            ["local-key.31.1", "local-key.31.2", "local-key.32.1"], "fetched from the store, none created"
    finally:
        b.stop()


def test_the_backup_against_a_broker_on_another_store_is_refused(workdir, moto, master_key, backup, tmp_path_factory):
    wrong = store_broker(workdir, "host-c", moto, master_key, prefix="elsewhere")
    wrong.start(env=moto.account.env())
    try:
        other = key_set(wrong)
        assert other != backup["key_set"]
        # Restored with the right store, then the server is started on a host pointed elsewhere.
        right = store_broker(workdir, "host-c-right", moto, master_key, prefix="restore")
        right.start(env=moto.account.env())
        try:
            server, _ = restore_on(right, backup, tmp_path_factory, "host-c-prepared")
            server.start()
            assert server.stop() == 0  # the datadir has recorded its key set
        finally:
            right.stop()
        server.options["keybroker-key-management-socket"] = wrong.socket
        server.write_cnf()
        code, _, log = server.start_to_exit()
        assert code != 0
        assert (f'the broker serves key set {other} for instance "default", but this datadir was encrypted with '
                f'key set {backup["key_set"]}') in log
        assert not list(wrong.instance_dir().glob("local-key.3*")), "no key 31 or 32 created in the wrong key set"
    finally:
        wrong.stop()
