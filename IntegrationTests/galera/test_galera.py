"""Galera with keybroker: a cluster on loopback (Debian's galera-4, state transfer by
mariadb-backup over socat), every node's plugin asking a broker for the keys of its pages.

The cluster is started once for the module (support/galera_cluster.py): node1 bootstraps, node2
joins by SST; tables on new key ids are created and rotated on different nodes; node3 joins by
SST afterwards and must read every row, which it can only do when its broker serves the same
bytes for every (key id, version) as the donor's. Here all three nodes use one broker (one key
set, one state dir: the shape of a single host); test_galera_shared_store.py gives each node its
own broker on one S3 bucket.
"""
import time

import pytest

from galera_cluster import GaleraCluster
from mariadb_server import files_containing, wait_until

ROWS = 2000
MARKER = "galera-plaintext-marker"


@pytest.fixture(scope="module")
def cluster(broker, tmp_path_factory):
    """`broker`: the conftest's, one for every node."""
    c = GaleraCluster.of_two(tmp_path_factory.mktemp("galera"), [broker.socket] * 3)
    yield c
    c.stop()


def fill(node, table, key_id, first, count):
    values = ", ".join(f"({i}, '{MARKER} {i}')" for i in range(first, first + count))
    node.client(f"INSERT INTO kb.{table} VALUES {values}")


def checksums(node, tables):
    return {t: node.value(f"SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(CRC32(CONCAT(id, v))), 0)) FROM kb.{t}")
            for t in tables}


def test_tables_on_new_key_ids_created_and_rotated_on_different_nodes(cluster):
    node1, node2, _ = cluster.nodes
    assert cluster.cluster_size(node1) == 2
    node1.client("CREATE DATABASE kb; CREATE TABLE kb.a (id INT PRIMARY KEY, v VARCHAR(80)) ENCRYPTION_KEY_ID=21")
    node2.client("CREATE TABLE kb.b (id INT PRIMARY KEY, v VARCHAR(80)) ENCRYPTION_KEY_ID=22")
    fill(node1, "a", 21, 1, ROWS)
    fill(node2, "b", 22, 1, ROWS)
    node2.client("SET GLOBAL keybroker_key_management_rotate_key = 21")
    node1.client("SET GLOBAL keybroker_key_management_rotate_key = 22")
    fill(node2, "a", 21, ROWS + 1, ROWS)
    fill(node1, "b", 22, ROWS + 1, ROWS)
    # Each node re-encrypts its own copy with version 2 of each key (background threads).
    for node in (node1, node2):
        wait_until(lambda: {node.encryption()[f"kb/{t}"][2] for t in "ab"} == {2}, timeout=120,
                   message=f"{node.name} to re-encrypt kb.a and kb.b with version 2")
        assert node.encryption()["kb/a"][0] == 21 and node.encryption()["kb/b"][0] == 22
    assert checksums(node1, "ab") == checksums(node2, "ab")
    assert checksums(node1, "ab")["a"].startswith(f"{2 * ROWS}:")


def test_a_node_joins_by_sst_afterwards_and_reads_every_row(cluster):
    node1, node2, node3 = cluster.nodes
    node3.install()
    started = time.monotonic()
    cluster.start_joiner(node3)
    joined_in = time.monotonic() - started
    log = node3.log_text()
    assert "WSREP_SST: [INFO] mariabackup SST started on joiner" in log, log[-3000:]
    sst = log.index("WSREP_SST: [INFO] Preparing the backup")  # mariadb-backup --prepare, with the keys
    assert "WSREP_SST: [INFO] Move successful" in log
    # The joiner's plugin starts on the transferred datadir and records the key set it is served.
    assert f'recorded key set {node1.status()["keybroker_key_management_key_set"]} of instance "default"' in log[sst:]
    assert cluster.cluster_size(node3) == 3
    expected = checksums(node1, "ab")
    assert checksums(node3, "ab") == expected, "every row, read with the keys of the joiner's broker"
    for t in "ab":
        assert node3.rows(f"CHECK TABLE kb.{t}")[-1][-1] == "OK"
    node3.client("FLUSH TABLES kb.a, kb.b FOR EXPORT; UNLOCK TABLES")
    assert not [p for p in files_containing(node3.datadir / "kb", MARKER.encode())], \
        "the joiner's tablespaces are encrypted on disk"
    print(f"galera: cluster of 2 up in {cluster.started_in:.1f} s, node3 joined by SST in {joined_in:.1f} s, "
          f"{4 * ROWS} rows checked on every node")
