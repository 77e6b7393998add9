"""A Galera cluster on loopback: mariadbd nodes from Debian's mariadb-server with galera-4, each
loading keybroker_key_management.so, state transfer by mariadb-backup over socat
(wsrep_sst_method=mariabackup), as a DBA runs one.

Used by IntegrationTests/galera. Every node has its own directory (option file, datadir, socket,
error log) and four loopback ports picked free at construction: SQL, group communication
(gmcast), incremental state transfer (IST) and snapshot transfer (SST). Which broker a node talks
to is the caller's choice: one broker for every node, or one per node on a shared store.
"""
import random
import shutil
import socket
import time
from pathlib import Path

from mariadb_server import ENCRYPTION_OPTIONS, MariaDB, require_mariadb_and_plugin

GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
CLUSTER_NAME = "keybroker-test"


def require_galera():
    """What `make deps` installs; missing is an error, never a skip."""
    for tool in ("mariadb-backup", "socat", "wsrep_sst_mariabackup"):
        assert shutil.which(tool), f"{tool} not found: run `make deps` (galera-4, socat, mariadb-backup)"
    assert Path(GALERA_PROVIDER).exists(), f"{GALERA_PROVIDER} not found: run `make deps` (galera-4)"


def free_ports(count):
    """Ports free now (held open together, so they differ), taken below the kernel's ephemeral
    range: a node binds them only later (the SST port when a joiner starts), and a port from the
    ephemeral range can meanwhile become the local port of any outgoing connection (seen: socat's
    SST listener failing with EADDRINUSE)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(10000, max(low, 10001)))
    random.shuffle(candidates)
    sockets = []
    try:
        for port in candidates:
            s = socket.socket()
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
            if len(sockets) == count:
                return [s.getsockname()[1] for s in sockets]
        raise AssertionError(f"fewer than {count} free ports between 10000 and {low}")
    finally:
        for s in sockets:
            s.close()


class GaleraNode(MariaDB):
    def __init__(self, workdir, name, broker_socket, instance="default", options=None):
        self.name = name
        self.sql_port, self.group_port, self.ist_port, self.sst_port = free_ports(4)
        self.cluster_address = "gcomm://"
        super().__init__(workdir, broker_socket, instance=instance, options={
            **ENCRYPTION_OPTIONS,
            "keybroker-key-management-request-timeout": "5000",
            "keybroker-key-management-version-ttl": "1000",
            "skip-networking": False,
            "bind-address": "127.0.0.1",
            "port": str(self.sql_port),
            "binlog-format": "ROW",
            "default-storage-engine": "InnoDB",
            "innodb-autoinc-lock-mode": "2",
            "wsrep-on": "ON",
            "wsrep-provider": GALERA_PROVIDER,
            "wsrep-cluster-name": CLUSTER_NAME,
            "wsrep-node-name": name,
            "wsrep-node-address": "127.0.0.1",
            "wsrep-provider-options": f'"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port};'
                                      f'ist.recv_addr=127.0.0.1:{self.ist_port};gcache.size=64M"',
            "wsrep-sst-method": "mariabackup",
            "wsrep-sst-receive-address": f"127.0.0.1:{self.sst_port}",
            # mariadb-backup on the donor connects as root over the socket (unix_socket auth).
            "wsrep-sst-auth": "root:",
            **(options or {}),
        })

    def join(self, cluster_address):
        self.options["wsrep-cluster-address"] = cluster_address
        self.write_cnf()

    def wait_synced(self, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.new_log()[-6000:]}")
            r = self.client("SHOW STATUS LIKE 'wsrep_local_state_comment'", check=False)
            if r.returncode == 0 and r.stdout.split() == ["wsrep_local_state_comment", "Synced"]:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not Synced after {timeout} s:\n{self.new_log()[-6000:]}")

    def status_value(self, name):
        return self.value("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                          f"WHERE VARIABLE_NAME = UPPER('{name}')")


class GaleraCluster:
    """Nodes that share one cluster address; the first bootstraps it."""

    def __init__(self, workdir, brokers, instance="default"):
        """`brokers`: the broker socket of each node, in order (the same one for all, or one each)."""
        require_galera()
        self.dir = Path(workdir)
        self.nodes = [GaleraNode(self.dir / f"node{i + 1}", f"node{i + 1}", socket_path, instance=instance)
                      for i, socket_path in enumerate(brokers)]
        address = "gcomm://" + ",".join(f"127.0.0.1:{n.group_port}" for n in self.nodes)
        for n in self.nodes:
            n.join(address)

    @classmethod
    def of_two(cls, workdir, brokers):
        """The galera modules' cluster, started once each: node1 bootstraps, node2 joins by SST;
        the third node (if any) is left for the tests. `started_in`: the seconds that took."""
        require_mariadb_and_plugin()
        started = time.monotonic()
        cluster = cls(workdir, brokers)
        node1, node2 = cluster.nodes[:2]
        node1.install()
        cluster.bootstrap(node1)
        node2.install()
        cluster.start_joiner(node2)
        cluster.started_in = time.monotonic() - started
        return cluster

    def bootstrap(self, node):
        """The first node: a new cluster from its datadir."""
        node.start("--wsrep-new-cluster", wait=False)
        node.wait_ready(120)
        node.wait_synced()

    def start_joiner(self, node, timeout=600):
        """A node that joins the running cluster (SST or IST, as the donor decides)."""
        node.start(wait=False)
        node.wait_ready(timeout)
        node.wait_synced(timeout)

    def cluster_size(self, node):
        return int(node.status_value("wsrep_cluster_size"))

    def stop(self):
        for n in reversed(self.nodes):
            n.stop(timeout=120)
