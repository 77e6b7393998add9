"""Runs IntegrationTests/plugin/plugin_driver.c: the real plugin, loaded as mariadbd loads it, one
command a line."""
import subprocess
import threading
from pathlib import Path

from broker import ROOT

BUILD = ROOT / "build"
TOOLS = BUILD / "tools"


def build_test_tools():
    """`make plugin test-tools`: the plugin, the drivers, and the plugin with sanitizers."""
    subprocess.run(["make", "-s", "-C", str(ROOT), "plugin", "test-tools"], check=True)


def variant_paths(variant=""):
    """(driver, plugin) built alike: "" plain, "asan" (with UBSan), "tsan"."""
    suffix = f"-{variant}" if variant else ""
    return TOOLS / f"plugin_driver{suffix}", BUILD / f"plugin{suffix}" / "keybroker_key_management.so"


class Driver:
    def __init__(self, socket, variant="", env=None, **settings):
        driver, so = variant_paths(variant)
        cmd = [str(driver), str(so)]
        if variant == "tsan":
            cmd = ["setarch", "-R", *cmd]  # TSan's shadow memory wants the classic layout
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.err_lines = []
        self._done = threading.Semaphore(0)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.set("socket", socket)
        for k, v in {"request_timeout": 1500, "version_ttl": 60000, "startup_timeout": 0, **settings}.items():
            self.set(k, v)

    def _read_stderr(self):
        for line in self.proc.stderr:
            if line == "\x01done\n":  # every line of the last command is in err_lines
                self._done.release()
            else:
                self.err_lines.append(line.rstrip("\n"))

    @property
    def log(self):
        return "\n".join(self.err_lines)

    def cmd(self, line, timeout=120, raw=False):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()))
        t.start()
        t.join(timeout)
        if not out or not out[0]:
            raise RuntimeError(f"driver gave no answer to {line!r} (exit {self.proc.poll()}):\n{self.log[-4000:]}")
        self._done.acquire(timeout=10)
        return out[0].rstrip("\n") if raw else out[0].split()[1:]

    def set(self, name, value):
        self.cmd(f"set {name} {value}")

    def init(self):
        rc, ms = self.cmd("init")
        return int(rc), float(ms)

    def deinit(self):
        rc, ms = self.cmd("deinit")
        return int(rc), float(ms)

    def latest(self, key_id):
        v, ms = self.cmd(f"latest {key_id}")
        return int(v), float(ms)

    def get(self, key_id, version):
        rc, length, hexkey, ms = self.cmd(f"get {key_id} {version}")
        return int(rc), bytes.fromhex(hexkey) if hexkey != "-" else None

    def status(self):
        r = self.cmd("status")
        return {r[i]: int(r[i + 1]) for i in range(0, len(r), 2)}

    def texts(self):
        """The status variables that are text: {name: value}."""
        fields = self.cmd("texts", raw=True).split("\t")[1:]
        return dict(zip(fields[0::2], fields[1::2]))

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode
