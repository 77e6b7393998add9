"""A real mariadbd encrypts its tables with keys from the kmip provider (issue 15): the data keys
are wrapped by PyKMIP's server, MariaDB gets them through the plugin, and the plaintext is not on
disk. One KMIP server, one broker, one mariadbd for the module."""
import pytest

import kmipserver
from broker import Broker
from kmipserver import kmip_instance, unwrap_blob
from mariadb_server import ENCRYPTION_OPTIONS, files_containing, installed_server

# PyKMIP 0.11 (the server's own client, used to set up master keys) warns about APIs of Python
# and SQLAlchemy it still uses; they are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MARKER = "kb-kmip-secret-51d2"


@pytest.fixture(scope="module")
def kmip():
    return kmipserver.shared()


@pytest.fixture(scope="module")
def master_key(kmip):
    return kmip.create_master_key(name="mariadb-encryption-e2e")


@pytest.fixture(scope="module")
def kmip_broker(workdir, kmip, master_key):
    b = Broker(workdir / "kmip-broker", instances={
        "default": kmip_instance(kmip, master_key_id="name:mariadb-encryption-e2e")}).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def server(kmip_broker, tmp_path_factory):
    s = installed_server(tmp_path_factory.mktemp("mariadb-kmip"), kmip_broker.socket,
                         options={**ENCRYPTION_OPTIONS, "keybroker-key-management-request-timeout": "5000"})
    yield s
    s.stop()


def test_tables_are_encrypted_with_kmip_wrapped_keys(server, kmip_broker, kmip, master_key):
    server.client("CREATE DATABASE kb")
    server.client("CREATE TABLE kb.t1 (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTION_KEY_ID=1")
    server.client("CREATE TABLE kb.t5 (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTION_KEY_ID=5")
    server.client("CREATE TABLE kb.plain (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTED=NO")
    rows = ",".join(f"({i}, '{MARKER}-{i}')" for i in range(1, 201))
    for table in ("t1", "t5", "plain"):
        server.client(f"INSERT INTO kb.{table} VALUES {rows}")
    server.client("FLUSH TABLES kb.t1, kb.t5, kb.plain FOR EXPORT; UNLOCK TABLES")
    spaces = server.encryption()
    assert spaces["kb/t1"] == (1, 1, 1) and spaces["kb/t5"] == (5, 1, 1)
    assert files_containing(server.datadir, MARKER.encode()) == [server.datadir / "kb" / "plain.ibd"]
    # Every key MariaDB uses is a kmip-key file that the key manager's master key unwraps.
    files = sorted(p.name for p in kmip_broker.instance_dir().iterdir())
    assert "kmip-key.1.1" in files and "kmip-key.5.1" in files and "kmip-key.2.1" in files
    master = kmip.master_key_bytes(master_key)
    blob = (kmip_broker.instance_dir() / "kmip-key.5.1").read_bytes()
    key = unwrap_blob(blob, master, 5, 1)
    assert key not in blob
    assert "keybroker_key_management: loaded key 5, version 1, key length 256 bit" in server.log_text()


def test_rotation_and_restarts_read_every_row_back(server, kmip_broker):
    server.client("SET GLOBAL keybroker_key_management_rotate_key = 5")
    assert "kmip-key.5.2" in [p.name for p in kmip_broker.instance_dir().iterdir()]
    # Both restarted: the broker unwraps every stored key through the KMIP server again.
    kmip_broker.restart()
    server.restart()
    assert server.value("SELECT COUNT(*) FROM kb.t1 WHERE v LIKE 'kb-kmip-secret-51d2-%'") == "200"
    assert server.value("SELECT COUNT(*) FROM kb.t5") == "200"
    stored = len(list(kmip_broker.instance_dir().glob("kmip-key.*")))
    assert stored >= 4
    assert f"loaded {stored} of {stored} stored key versions" in kmip_broker.log_text()


def test_status_variables_and_a_revoked_master_key_in_the_error_log(server, kmip_broker, kmip, master_key):
    """SQL names the provider, key and server; a master key revoked in the key manager is REFUSED
    with KMIP's reason and the key in the server's error log (not a permission problem of the
    database), while the keys already in use keep working. Last: the module's key stays revoked."""
    status = server.status()
    assert status["keybroker_key_management_provider"].startswith("kmip name:mariadb-encryption-e2e "), status
    assert status["keybroker_key_management_master_key"] == "name:mariadb-encryption-e2e"
    kmip.revoke(master_key)
    r = server.client("CREATE TABLE kb.t9 (id INT) ENCRYPTION_KEY_ID=9", check=False)
    assert r.returncode != 0
    log = server.new_log()
    assert (f'keybroker_key_management: the key service refused key 9 of instance "default": Permission Denied for key '
            f'{master_key} — the KMIP server does not let keybrokerd\'s client certificate use the key, or the key is '
            f'not active (broker: KMIP master key {master_key}: it is revoked') in log, log[-3000:]
    assert "add the user to clients" not in log
    server.client("INSERT INTO kb.t5 VALUES (1000, 'after revoke')")
    assert server.value("SELECT COUNT(*) FROM kb.t5") == "201"
