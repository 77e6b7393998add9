"""Galera with one broker per node on one S3 bucket (issue 13): the shape docs/multi-host.md
describes. moto_server serves S3 and KMS with signature checking on (support/s3store.py, patched
for moto 5.2's two S3 faults); each node's keybrokerd has its own state dir and shares only the
bucket (and the local provider's master key file, as hosts of one key set do).

Tables on new key ids are created and rotated on different nodes, so every key version is made by
one node's broker and must be served byte-identically by the others; node3 joins by mariabackup
SST afterwards, through a broker that has never seen a key, and reads every row; then node3's
broker loses its state dir and node3 rejoins and reads every row. The cluster starts once.
"""
import shutil
import time

import pytest

import kbproto
from broker import write_master_key
from galera_cluster import GaleraCluster
from mariadb_server import files_containing, wait_until
from s3store import s3_moto_fixture, store_broker

ROWS = 2000
MARKER = "galera-s3-plaintext"
PREFIX = "galera"


moto = s3_moto_fixture()


@pytest.fixture(scope="module")
def brokers(workdir, moto):
    master_key = write_master_key(workdir / "galera-master.key")
    bs = [store_broker(workdir, f"broker{i}", moto, master_key, prefix=PREFIX, refresh_ms=500) for i in (1, 2, 3)]
    for b in bs:
        b.start(env=moto.account.env())
    yield bs
    for b in bs:
        b.stop()


@pytest.fixture(scope="module")
def cluster(brokers, tmp_path_factory):
    c = GaleraCluster.of_two(tmp_path_factory.mktemp("galera-s3"), [b.socket for b in brokers])
    c.timings = {}
    yield c
    c.stop()


def key_set(broker):
    with kbproto.Client(broker.socket) as c:
        assert c.hello().status == kbproto.OK
        r = c.info()
        assert r.status == kbproto.OK, r
        return r.info()["key_set"]


def fill(node, table, first, count):
    values = ", ".join(f"({i}, '{MARKER} {i}')" for i in range(first, first + count))
    node.client(f"INSERT INTO kb.{table} VALUES {values}")


def checksums(node):
    return {t: node.value(f"SELECT CONCAT(COUNT(*), ':', SUM(CRC32(CONCAT(id, v)))) FROM kb.{t}") for t in "ab"}


def test_every_broker_names_one_key_set(brokers):
    assert len({key_set(b) for b in brokers}) == 1


def test_tables_on_new_key_ids_created_and_rotated_on_different_nodes(cluster, brokers, moto):
    node1, node2, _ = cluster.nodes
    node1.client("CREATE DATABASE kb; CREATE TABLE kb.a (id INT PRIMARY KEY, v VARCHAR(80)) ENCRYPTION_KEY_ID=21")
    node2.client("CREATE TABLE kb.b (id INT PRIMARY KEY, v VARCHAR(80)) ENCRYPTION_KEY_ID=22")
    fill(node1, "a", 1, ROWS)
    fill(node2, "b", 1, ROWS)
    node2.client("SET GLOBAL keybroker_key_management_rotate_key = 21")
    node1.client("SET GLOBAL keybroker_key_management_rotate_key = 22")
    fill(node2, "a", ROWS + 1, ROWS)
    fill(node1, "b", ROWS + 1, ROWS)
    for node in (node1, node2):
        wait_until(lambda: {node.encryption()[f"kb/{t}"][2] for t in "ab"} == {2}, timeout=120,
                   message=f"{node.name} to re-encrypt kb.a and kb.b with version 2")
    assert checksums(node1) == checksums(node2)
    names = set(moto.account.objects(f"{PREFIX}/default/"))
    assert {f"{PREFIX}/default/local-key.{k}.{v}" for k in (21, 22) for v in (1, 2)} <= names
    assert f"{PREFIX}/default/key-set" in names
    # Each version was made by one node's broker and is the same bytes on the other.
    b1, b2, _ = brokers
    for k in (21, 22):
        for v in (1, 2):
            assert (b1.instance_dir() / f"local-key.{k}.{v}").read_bytes() == (b2.instance_dir() / f"local-key.{k}.{v}").read_bytes()


def test_a_node_joins_by_sst_afterwards_and_reads_every_row(cluster, brokers):
    node1, _, node3 = cluster.nodes
    node3.install()
    started = time.monotonic()
    cluster.start_joiner(node3)
    cluster.timings["sst"] = time.monotonic() - started
    log = node3.log_text()
    assert "WSREP_SST: [INFO] mariabackup SST started on joiner" in log
    assert "WSREP_SST: [INFO] Preparing the backup" in log
    assert checksums(node3) == checksums(node1), "every row, with keys from node3's own broker"
    for t in "ab":
        assert node3.rows(f"CHECK TABLE kb.{t}")[-1][-1] == "OK"
    assert node3.status()["keybroker_key_management_key_set"] == key_set(brokers[0])
    for name in ("local-key.21.1", "local-key.21.2", "local-key.22.1", "local-key.22.2"):
        assert (brokers[2].instance_dir() / name).read_bytes() == (brokers[0].instance_dir() / name).read_bytes()
    node3.client("FLUSH TABLES kb.a, kb.b FOR EXPORT; UNLOCK TABLES")
    assert not files_containing(node3.datadir / "kb", MARKER.encode())


def test_a_node_whose_broker_lost_its_state_dir_rejoins_and_reads_every_row(cluster, brokers):
    node1, _, node3 = cluster.nodes
    b3 = brokers[2]
    before = key_set(b3)
    assert node3.stop(timeout=120) == 0
    fill(node1, "a", 2 * ROWS + 1, 100)  # written while node3 is away: IST brings it
    assert b3.stop() == 0
    shutil.rmtree(b3.state_dir)
    b3.start()
    assert key_set(b3) == before, "the key set comes from the store, not from the lost state dir"
    started = time.monotonic()
    cluster.start_joiner(node3)
    cluster.timings["rejoin"] = time.monotonic() - started
    assert f'as recorded in {node3.datadir}/keybroker_key_set' in node3.new_log()
    assert checksums(node3) == checksums(node1)
    assert node3.value("SELECT COUNT(*) FROM kb.a") == str(2 * ROWS + 100)
    print(f"galera on S3: 2 nodes up in {cluster.started_in:.1f} s, node3 SST {cluster.timings['sst']:.1f} s, "
          f"rejoin after losing its broker's state dir {cluster.timings['rejoin']:.1f} s, "
          f"{4 * ROWS + 100} rows checked on every node")
