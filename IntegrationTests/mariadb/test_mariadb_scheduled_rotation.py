"""Scheduled rotation seen from a real mariadbd (issue 16 item 6): with rotate_after = "2s" (set by a
reload) the broker writes new versions once per period, the plugin picks them up within its
version_ttl, and InnoDB's encryption threads re-encrypt the tables to them."""
import signal
import time

import pytest

from broker import Broker
from mariadb_server import ENCRYPTION_OPTIONS, installed_server, wait_until


@pytest.fixture(scope="module")
def rotating(workdir, tmp_path_factory):
    b = Broker(workdir / "sched")
    b.start()
    s = installed_server(tmp_path_factory.mktemp("mariadb-sched"), b.socket,
                         options={**ENCRYPTION_OPTIONS, "keybroker-key-management-version-ttl": "500",
                                  "innodb-encryption-rotate-key-age": "1"})
    yield b, s
    s.stop()
    b.stop()


def set_rotate_after(b, value):
    if value:
        b.instances["default"]["rotate_after"] = value
    else:
        b.instances["default"].pop("rotate_after", None)
    b.write_config()
    before = b.log_text().count("reloaded ")
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: b.log_text().count("reloaded ") > before, timeout=20, message="the reload")


def test_innodb_reencrypts_to_the_versions_scheduled_rotation_writes(rotating):
    b, s = rotating
    s.script("CREATE DATABASE kb; CREATE TABLE kb.t1 (id INT PRIMARY KEY, v VARCHAR(64)) ENCRYPTION_KEY_ID=1;"
             + "".join(f"INSERT INTO kb.t1 VALUES ({i}, REPEAT('x', 60));" for i in range(1, 201)))
    assert s.encryption()["kb/t1"] == (1, 1, 1)
    set_rotate_after(b, "2s")
    started = time.time()

    def current_version_at_least(n):
        def check():
            # MariaDB 10.6+ encryption threads sleep until a setting changes; this wakes them (docs/setup.md).
            s.client("SET GLOBAL innodb_encryption_rotate_key_age = @@innodb_encryption_rotate_key_age")
            return s.encryption()["kb/t1"][2] >= n
        return check

    wait_until(current_version_at_least(4), timeout=30, interval=0.5, message="InnoDB using version 4 of key 1")
    set_rotate_after(b, None)  # stop here, so re-encryption has a fixed target
    elapsed = time.time() - started
    latest = int(dict(line.split()[:2] for line in b.ctl("list").stdout.splitlines()[1:] if line)["1"])
    assert latest <= elapsed / 2 + 2, f"{latest} versions in {elapsed:.1f} s: more than one per period"

    def reencrypted():
        s.client("SET GLOBAL innodb_encryption_rotate_key_age = @@innodb_encryption_rotate_key_age")
        spaces = s.encryption()
        return spaces if spaces["kb/t1"][1] >= latest - 1 and spaces["innodb_system"][1] >= 3 else None

    done = wait_until(reencrypted, timeout=90, interval=1, message="re-encryption to the scheduled versions")
    assert done["kb/t1"][2] == latest and done["kb/t1"][1] >= latest - 1, done["kb/t1"]
    assert int(s.value("SELECT COUNT(*) FROM kb.t1")) == 200
    assert b.log_text().count("was older than rotate_after") >= latest - 1
    print(f"InnoDB: key 1 at version {latest} after {elapsed:.1f} s of rotate_after 2s; kb/t1 min version {done['kb/t1'][1]}")
