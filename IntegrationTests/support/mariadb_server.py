"""Start and stop a throw-away mariadbd that loads keybroker_key_management.so (build/plugin).

Used by IntegrationTests/mariadb/test_mariadb_*.py. The server runs on its own datadir with --skip-networking; the
SQL client is the real `mariadb` binary talking over the server's socket.
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

from broker import ROOT, me, terminate

PLUGIN_DIR = ROOT / "build" / "plugin"
PLUGIN_SO = PLUGIN_DIR / "keybroker_key_management.so"

# What the issue asks for: tables, redo log and temporary files encrypted from the first start.
ENCRYPTION_OPTIONS = {
    "innodb-encrypt-tables": "ON",
    "innodb-encrypt-log": "ON",
    "innodb-encrypt-temporary-tables": "ON",
    "encrypt-tmp-files": "ON",
    "encrypt-tmp-disk-tables": "ON",
    "innodb-encryption-threads": "2",
    "innodb-encryption-rotation-iops": "10000",
}


def build_plugin():
    """`make plugin` (C only, seconds): the tests always run the plugin built from this tree."""
    subprocess.run(["make", "-s", "-C", str(ROOT), "plugin"], check=True)
    assert PLUGIN_SO.exists()


def require_mariadb():
    """The Debian packages `make deps` installs; a missing one is an error, never a skip."""
    for tool in ("mariadbd", "mariadb", "mariadb-install-db", "mariadb-admin"):
        assert shutil.which(tool) or Path("/usr/sbin", tool).exists(), \
            f"{tool} not found: run `make deps` (mariadb-server, mariadb-client)"


def require_mariadb_and_plugin():
    """What a test needs before its first mariadbd: the packages, and the plugin of this tree."""
    require_mariadb()
    build_plugin()


def installed_server(workdir, broker_socket=None, start=True, **settings):
    """A MariaDB (`settings` as MariaDB takes them) on a fresh datadir, with the plugin built:
    installed (mariadb-install-db's result kept as `installed`), and started unless `start` is
    False."""
    require_mariadb_and_plugin()
    server = MariaDB(workdir, broker_socket, **settings)
    server.installed = server.install()
    if start:
        server.start()
    return server


def mariadbd_path():
    return shutil.which("mariadbd") or "/usr/sbin/mariadbd"


class MariaDB:
    """One mariadbd with its own directory: option file, datadir, socket, error log."""

    def __init__(self, workdir, broker_socket=None, instance="default", plugin=True, options=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.datadir = self.dir / "data"
        self.socket = str(self.dir / "mysqld.sock")
        self.error_log = self.dir / "error.log"
        self.cnf = self.dir / "my.cnf"
        self.proc = None
        self.options = {
            "datadir": str(self.datadir),
            "socket": self.socket,
            "pid-file": str(self.dir / "mysqld.pid"),
            "log-error": str(self.error_log),
            "tmpdir": str(self.dir / "tmp"),
            "skip-networking": None,
            "plugin-dir": str(PLUGIN_DIR),
            "innodb-buffer-pool-size": "64M",
            "innodb-log-file-size": "16M",
        }
        if os.geteuid() == 0:
            self.options["user"] = "root"
        if plugin:
            self.options.update({
                "plugin-load-add": "keybroker_key_management",
                "keybroker-key-management": "FORCE_PLUS_PERMANENT",
                "keybroker-key-management-socket": broker_socket,
                "keybroker-key-management-instance": instance,
            })
        elif broker_socket:
            # For INSTALL SONAME later: the server keeps loose- options for plugins it loads then.
            self.options["loose-keybroker-key-management-socket"] = broker_socket
            self.options["loose-keybroker-key-management-instance"] = instance
        self.options.update(options or {})
        self.write_cnf()

    def write_cnf(self):
        lines = ["[mariadbd]"]
        for k, v in self.options.items():
            if v is not False:
                lines.append(k if v is None else f"{k}={v}")
        self.cnf.write_text("\n".join(lines) + "\n")
        (self.dir / "tmp").mkdir(exist_ok=True)

    def install(self):
        """mariadb-install-db on an empty datadir, with the options (and plugin) of this server."""
        r = subprocess.run(
            ["mariadb-install-db", f"--defaults-file={self.cnf}", "--skip-test-db",
             "--auth-root-authentication-method=socket", f"--auth-root-socket-user={me()}",
             # the script puts its own --plugin-dir after the option file; this one comes last
             f"--plugin-dir={PLUGIN_DIR}"],
            capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"mariadb-install-db failed:\n{r.stdout}\n{r.stderr}\n{self.log_text()}"
        return r

    def start(self, *args, wait=True, timeout=60):
        self.log_mark = self.error_log.stat().st_size if self.error_log.exists() else 0
        self.proc = subprocess.Popen([mariadbd_path(), f"--defaults-file={self.cnf}", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive():
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{self.new_log()}")
            if os.path.exists(self.socket) and self.client("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"mariadbd not ready after {timeout} s:\n{self.new_log()}")

    def wait_exit(self, timeout=60):
        return self.proc.wait(timeout)

    def start_to_exit(self, *args, timeout=60):
        """Starts with `args` and waits up to `timeout` s for mariadbd to exit by itself (a start
        that must fail): (exit code, seconds from start to exit, the error log of this start)."""
        started = time.time()
        self.start(*args, wait=False)
        code = self.wait_exit(timeout)
        return code, time.time() - started, self.new_log()

    def stop(self, timeout=60):
        code = terminate(self.proc, timeout=timeout)
        self.proc = None
        return code

    def restart(self, *args):
        assert self.stop() == 0, self.new_log()
        return self.start(*args)

    def client(self, sql, check=True, force=False, timeout=120):
        cmd = ["mariadb", "--no-defaults", f"--socket={self.socket}", f"--user={me()}",
               "--batch", "--skip-column-names", "-e", sql]
        if force:
            cmd.insert(2, "--force")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"SQL failed: {sql}\n{r.stderr}"
        return r

    def script(self, sql, timeout=600):
        """Runs many statements through the client's standard input (no argv length limit)."""
        r = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", f"--user={me()}",
                            "--batch", "--skip-column-names"], input=sql, capture_output=True,
                           text=True, timeout=timeout)
        assert r.returncode == 0, f"SQL script failed:\n{r.stderr[-2000:]}"
        return [tuple(line.split("\t")) for line in r.stdout.splitlines()]

    def rows(self, sql):
        out = self.client(sql).stdout
        return [tuple(line.split("\t")) for line in out.splitlines()]

    def value(self, sql):
        rows = self.rows(sql)
        return rows[0][0] if rows else None

    def status(self):
        """keybroker_key_management_* status variables, names lower-cased, values as strings."""
        return {k.lower(): v for k, v in self.rows("SHOW GLOBAL STATUS LIKE 'keybroker%'")}

    def log_text(self):
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def new_log(self):
        """The error log written since the last start()."""
        return self.log_text()[getattr(self, "log_mark", 0):]

    def encryption(self):
        """{tablespace name: (key id, min key version, current key version)}."""
        rows = self.rows("SELECT NAME, CURRENT_KEY_ID, MIN_KEY_VERSION, CURRENT_KEY_VERSION "
                         "FROM information_schema.INNODB_TABLESPACES_ENCRYPTION")
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def files_containing(directory, needle):
    """Every file under directory whose bytes contain needle."""
    hits = []
    for path in Path(directory).rglob("*"):
        if path.is_file() and not path.is_socket():
            with open(path, "rb") as f:
                if needle in f.read():
                    hits.append(path)
    return hits


def wait_until(predicate, timeout, interval=0.2, message="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
