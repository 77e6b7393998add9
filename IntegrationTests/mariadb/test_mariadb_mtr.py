"""Runs the mtr suite beside the plugin (Sources/keybroker_key_management/mtr; MariaDB's own test framework, Debian's mariadb-test) against
a real keybrokerd, and requires every test of it to pass: a skipped suite is a failure."""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from broker import ROOT, Broker
from mariadb_server import PLUGIN_DIR, require_mariadb_and_plugin

SUITE = ROOT / "Sources" / "keybroker_key_management" / "mtr"
MTR_DIRS = [Path("/usr/share/mysql/mysql-test"), Path("/usr/share/mariadb/mariadb-test")]


def find_mtr():
    for d in MTR_DIRS:
        for name in ("mariadb-test-run", "mtr", "mysql-test-run"):
            if (d / name).exists():
                return d / name
    raise AssertionError("mtr not found: run `make deps` (Debian package mariadb-test)")


def test_mtr_suite(tmp_path):
    require_mariadb_and_plugin()
    mtr = find_mtr()
    broker = Broker(tmp_path / "broker")
    broker.instances["default"]["auto_create"] = True
    broker.write_config()
    broker.start()
    # mtr cuts a --suite path at its first "-" (a clone in /tmp/clean-x would break it): hand it
    # the suite through a link whose path has none.
    link_dir = tempfile.mkdtemp(prefix="kbmtr", dir="/tmp")
    suite = Path(link_dir) / "mtr"
    suite.symlink_to(SUITE)
    try:
        env = dict(os.environ, KEYBROKER_SOCKET=broker.socket, KEYBROKER_PLUGIN_DIR=str(PLUGIN_DIR),
                   KEYBROKER_INSTANCE="default")
        r = subprocess.run(
            [str(mtr), f"--suite={suite}", f"--vardir={tmp_path / 'var'}", "--force",
             "--max-test-fail=0", "--parallel=1", "--testcase-timeout=5"],
            cwd=mtr.parent, env=env, capture_output=True, text=True, timeout=600)
    finally:
        broker.stop()
        shutil.rmtree(link_dir, ignore_errors=True)
    out = r.stdout + r.stderr
    tests = sorted(t.stem for t in (SUITE / "t").glob("*.test"))
    passed = sorted(re.findall(r"mtr\.(\w+)\s+\[ pass \]", out))
    assert r.returncode == 0 and passed == tests, f"mtr failed (passed {passed} of {tests}):\n{out[-6000:]}"
