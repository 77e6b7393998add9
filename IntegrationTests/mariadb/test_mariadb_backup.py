"""INSTALL SONAME at runtime, then mariadb-backup --backup / --prepare / --copy-back of the
encrypted tables, with the plugin loaded by mariadb-backup itself, and the restore read back."""
import shutil
import subprocess

import pytest

from broker import me
from mariadb_server import MariaDB, files_containing, installed_server

MARKER = "kb-backup-5e21d0"


@pytest.fixture(scope="module")
def server(broker, tmp_path_factory):
    """A server installed and started without the plugin; it only knows where the broker is."""
    assert shutil.which("mariadb-backup"), "mariadb-backup not found: run `make deps`"
    s = installed_server(tmp_path_factory.mktemp("mariadb"), broker.socket, plugin=False)
    yield s
    s.stop()


def backup_tool(*args):
    r = subprocess.run(["mariadb-backup", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"mariadb-backup {' '.join(args)} failed:\n{r.stderr[-4000:]}"
    return r


def test_install_soname_at_runtime(server, broker):
    assert server.value("SELECT COUNT(*) FROM information_schema.PLUGINS "
                        "WHERE PLUGIN_NAME = 'keybroker_key_management'") == "0"
    server.client("INSTALL SONAME 'keybroker_key_management'")
    assert server.rows("SELECT PLUGIN_STATUS, PLUGIN_TYPE FROM information_schema.PLUGINS "
                       "WHERE PLUGIN_NAME = 'keybroker_key_management'") == [("ACTIVE", "ENCRYPTION")]
    assert server.value("SELECT @@keybroker_key_management_socket") == broker.socket
    assert server.status()["keybroker_key_management_connected"] == "ON"

    server.client("CREATE DATABASE kb")
    server.client("CREATE TABLE kb.t4 (id INT PRIMARY KEY, v VARCHAR(100)) "
                  "ENCRYPTED=YES ENCRYPTION_KEY_ID=4")
    server.client("CREATE TABLE kb.t1 (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTED=YES")
    rows = ",".join(f"({i}, '{MARKER}-{i}')" for i in range(1, 201))
    server.client(f"INSERT INTO kb.t4 VALUES {rows}; INSERT INTO kb.t1 VALUES {rows}")
    server.client("FLUSH TABLES kb.t4, kb.t1 FOR EXPORT; UNLOCK TABLES")
    spaces = server.encryption()
    assert spaces["kb/t4"] == (4, 1, 1) and spaces["kb/t1"] == (1, 1, 1)
    assert "keybroker_key_management: loaded key 4, version 1, key length 256 bit" in server.log_text()
    assert files_containing(server.datadir / "kb", MARKER.encode()) == []


def test_backup_prepare_restore_read_back(server, broker, tmp_path):
    expected = server.rows("CHECKSUM TABLE kb.t4, kb.t1")
    target = tmp_path / "backup"
    backup_tool(f"--defaults-file={server.cnf}", "--backup", f"--target-dir={target}",
                f"--socket={server.socket}", f"--user={me()}")
    backup_cnf = (target / "backup-my.cnf").read_text()
    assert "keybroker_key_management" in backup_cnf, backup_cnf
    assert files_containing(target / "kb", MARKER.encode()) == []

    r = backup_tool("--prepare", f"--target-dir={target}")
    assert "keybroker_key_management: connected to key broker" in r.stderr

    restored = MariaDB(tmp_path / "restored", broker.socket)
    backup_tool(f"--defaults-file={restored.cnf}", "--copy-back", f"--target-dir={target}")
    restored.start()
    try:
        assert restored.rows("CHECKSUM TABLE kb.t4, kb.t1") == expected
        assert restored.value(f"SELECT v FROM kb.t4 WHERE id = 200") == f"{MARKER}-200"
        assert restored.encryption()["kb/t4"] == (4, 1, 1)
    finally:
        restored.stop()
