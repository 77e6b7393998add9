"""The packages on a clean Debian bookworm host (issue 14): `apt-get install ./dist/*.deb` pulls
only Debian packages; keybroker.socket starts keybroker.service on the first connection;
Debian's mariadbd with the packaged plugin and option file creates an encrypted table whose
plaintext is not on disk; an upgrade to the next revision keeps the keys, restarts the broker
and leaves a running mariadbd serving (it reconnects); purge leaves only the data keys and the
master key, and says where they are.

The host is a debootstrap root booted with its own systemd (debian_root.py). SELinux cannot be
enabled in that root, so for the upgrade and the removal, stand-ins for selinuxenabled, semodule
and restorecon (which record their arguments) check that the maintainer scripts load and unload
the module where SELinux is on; this is the only hand-written fake here. They go in /usr/sbin:
apt runs dpkg with its own PATH (DPkg::Path), which has no /usr/local.
"""
import hashlib
import json
import re
import time

import pytest
from conftest import WORK
from debian_root import BootedRoot, ensure_base

from broker import ROOT  # noqa: E402

SNIPPET = "/etc/mysql/mariadb.conf.d/50-keybroker_key_management.cnf"
MASTER_KEY = "/etc/credstore/keybroker.local-master-key"
KEY_DIR = "/var/lib/keybroker/default"
MARKER = "keybroker-packaging-plaintext-marker"
TIMINGS = WORK / "timings.json"

SELINUX_STANDINS = {
    "selinuxenabled": "#!/bin/sh\nexit 0\n",
    "semodule": "#!/bin/sh\necho \"semodule $*\" >> /run/selinux-calls\n",
    "restorecon": "#!/bin/sh\necho \"restorecon $*\" >> /run/selinux-calls\n",
}


def record(name, seconds):
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[name] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(timings, indent=1))


@pytest.fixture(scope="module")
def host(debs, next_debs, tmp_path_factory):
    base = ensure_base(ROOT / ".build-debootstrap")
    root = BootedRoot(base, tmp_path_factory.mktemp("debian-root"), ROOT / ".build-debootstrap/apt-archives", WORK)
    try:
        root.boot()
        root.run("apt-get", "update", "-qq", timeout=600)
        yield root
    finally:
        root.shutdown()


def inside(debs):
    return [f"/dist/{debs.dist.name}/{debs.broker.name}", f"/dist/{debs.dist.name}/{debs.plugin.name}"]


def sql(host, statement):
    return host.run("mariadb", "--batch", "--skip-column-names", "-e", statement).stdout


def show(host, unit, prop):
    return host.run("systemctl", "show", unit, f"-p{prop}", "--value").stdout.strip()


def key_files(host):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(host.path(KEY_DIR).iterdir())}


def plugin_status(host):
    rows = sql(host, "SHOW GLOBAL STATUS LIKE 'keybroker_key_management%'")
    return dict(line.split("\t") for line in rows.splitlines())


def test_install_pulls_only_debian_packages(host, debs):
    simulated = host.run("apt-get", "install", "-s", "-y", *inside(debs)).stdout
    installs = re.findall(r"^Inst (\S+) .*?\((\S+) (.+?) \[", simulated, re.M)
    assert {"keybroker", "mariadb-plugin-keybroker", "mariadb-server"} <= {name for name, _, _ in installs}, simulated
    foreign = [(n, v, origin) for n, v, origin in installs
               if n not in ("keybroker", "mariadb-plugin-keybroker") and not origin.startswith("Debian")]
    assert foreign == [], foreign
    started = time.monotonic()
    r = host.run("apt-get", "install", "-y", *inside(debs), timeout=1200)
    record("install (apt-get install ./dist/*.deb, mariadb-server included)", time.monotonic() - started)
    assert f"keybroker: created the local master key {MASTER_KEY}" in r.stdout, r.stdout
    assert host.run("dpkg-query", "-W", "-f=${Version}", "keybroker").stdout == debs.version


def test_socket_is_enabled_and_listening_and_the_service_waits_for_it(host):
    assert host.run("systemctl", "is-enabled", "keybroker.socket").stdout.strip() == "enabled"
    assert show(host, "keybroker.socket", "ActiveState") == "active"
    assert show(host, "keybroker.service", "UnitFileState") != "enabled"
    sock = host.run("stat", "-c", "%A %U %G", "/run/keybroker/keybroker.sock").stdout.split()
    assert sock == ["srw-rw----", "root", "mysql"], sock
    key = host.run("stat", "-c", "%a %U", MASTER_KEY).stdout.split()
    assert key == ["600", "root"], key
    assert host.run("getent", "passwd", "keybroker").stdout.split(":")[6].strip().endswith("nologin")


def test_first_connection_starts_the_service(host):
    r = host.run("keybrokerctl", "status")
    assert "keybrokerd" in r.stdout, r.stdout
    assert show(host, "keybroker.service", "ActiveState") == "active"
    assert show(host, "keybroker.service", "SubState") == "running"


def test_mariadbd_with_the_packaged_snippet_creates_an_encrypted_table(host):
    host.run("sed", "-i", "s/^#\\([a-z]\\)/\\1/", SNIPPET)
    host.run("systemctl", "restart", "mariadb", timeout=300)
    assert sql(host, "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS "
                     "WHERE PLUGIN_NAME = 'keybroker_key_management'").strip() == "ACTIVE"
    sql(host, "CREATE DATABASE kb; "
              "CREATE TABLE kb.secret (id INT PRIMARY KEY, v VARCHAR(100)); "
              "CREATE TABLE kb.plain (id INT PRIMARY KEY, v VARCHAR(100)) ENCRYPTED=NO")
    rows = ",".join(f"({i}, '{MARKER}-{i}')" for i in range(1, 201))
    sql(host, f"INSERT INTO kb.secret VALUES {rows}; INSERT INTO kb.plain VALUES {rows}; "
              "FLUSH TABLES kb.secret, kb.plain FOR EXPORT; UNLOCK TABLES")
    encrypted = sql(host, "SELECT NAME, ENCRYPTION_SCHEME, CURRENT_KEY_VERSION FROM "
                          "information_schema.INNODB_TABLESPACES_ENCRYPTION WHERE NAME = 'kb/secret'")
    assert encrypted.split() == ["kb/secret", "1", "1"], encrypted
    datadir = host.path("/var/lib/mysql")
    hits = sorted(str(p.relative_to(datadir)) for p in datadir.rglob("*")
                  if p.is_file() and MARKER.encode() in p.read_bytes())
    # The unencrypted control table shows the scan would find the plaintext.
    assert hits == ["kb/plain.ibd"], hits
    assert "local-key.1.1" in key_files(host), key_files(host)
    status = plugin_status(host)
    assert status["Keybroker_key_management_connected"] == "ON", status


def test_upgrade_keeps_keys_restarts_the_broker_and_mariadbd_reconnects(host, next_debs):
    for name, text in SELINUX_STANDINS.items():
        host.path(f"/usr/sbin/{name}").write_text(text)
        host.path(f"/usr/sbin/{name}").chmod(0o755)
    keys_before = key_files(host)
    master_before = host.path(MASTER_KEY).read_bytes()
    broker_pid = show(host, "keybroker.service", "MainPID")
    mariadb_pid = show(host, "mariadb.service", "MainPID")
    reconnects = int(plugin_status(host)["Keybroker_key_management_reconnects"])
    started = time.monotonic()
    r = host.run("apt-get", "install", "-y", *inside(next_debs), timeout=900)
    record("upgrade N -> N+1 (apt-get install)", time.monotonic() - started)
    assert "created the local master key" not in r.stdout
    assert host.run("dpkg-query", "-W", "-f=${Version}", "keybroker").stdout == next_debs.version
    assert show(host, "keybroker.service", "ActiveState") == "active"
    assert show(host, "keybroker.service", "MainPID") not in ("0", broker_pid), "the broker was not restarted"
    assert show(host, "mariadb.service", "MainPID") == mariadb_pid, "mariadbd was restarted"
    assert key_files(host) == keys_before and host.path(MASTER_KEY).read_bytes() == master_before
    # Still serving: old keys from its cache, a new key id through a new connection to the new broker.
    assert sql(host, "SELECT COUNT(*) FROM kb.secret").strip() == "200"
    sql(host, "CREATE TABLE kb.after (id INT PRIMARY KEY) ENCRYPTION_KEY_ID=7; INSERT INTO kb.after VALUES (1)")
    assert sql(host, "SELECT id FROM kb.after").strip() == "1"
    assert int(plugin_status(host)["Keybroker_key_management_reconnects"]) > reconnects
    after = key_files(host)
    assert set(after) == set(keys_before) | {"local-key.7.1"}, after
    assert {k: after[k] for k in keys_before} == keys_before
    calls = host.path("/run/selinux-calls").read_text()
    assert "semodule -i /usr/share/selinux/packages/keybroker.pp" in calls, calls
    assert "restorecon -R /usr/sbin/keybrokerd" in calls, calls


def leftovers(host):
    """Every path in the root whose name mentions keybroker (the test's own mounts aside), with
    what is inside /var/lib/keybroker counted as that directory. MariaDB's datadir is not the
    packages': the plugin's record of its key set there (keybroker_key_set) stays with the data."""
    r = host.run("find", "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev",
                 "-o", "-path", "/dist", "-o", "-path", "/var/cache/apt/archives", "-o", "-path", "/var/lib/mysql",
                 ")", "-prune", "-o",
                 "-iname", "*keybroker*", "-print", check=False)
    return sorted(p for p in r.stdout.split() if not p.startswith("/var/lib/keybroker/"))


def test_remove_and_purge_leave_only_the_keys_and_say_where(host, debs):
    keys = key_files(host)
    host.run("systemctl", "stop", "mariadb", timeout=300)
    started = time.monotonic()
    r = host.run("apt-get", "purge", "-y", "keybroker", "mariadb-plugin-keybroker", timeout=600)
    record("remove and purge (apt-get purge)", time.monotonic() - started)
    assert "keybroker:   /var/lib/keybroker (the data keys, wrapped)" in r.stdout, r.stdout
    assert f"keybroker:   {MASTER_KEY}" in r.stdout, r.stdout
    assert "semodule -r keybroker" in host.path("/run/selinux-calls").read_text()
    assert host.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "keybroker", check=False).stdout.strip() in ("", "un")
    assert show(host, "keybroker.socket", "LoadState") == "not-found"
    assert host.run("pgrep", "-x", "keybrokerd", check=False).returncode == 1
    assert leftovers(host) == ["/etc/credstore/keybroker.local-master-key", "/var/lib/keybroker"], leftovers(host)
    assert key_files(host) == keys
    assert host.path("/var/lib/mysql/keybroker_key_set").exists(), "the datadir's key-set record is data: it stays"
    assert not host.path("/etc/keybroker").exists() and not host.path(SNIPPET).exists()
