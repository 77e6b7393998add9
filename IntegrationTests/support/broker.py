"""Start and stop a real keybrokerd for the integration tests."""
import os
import pwd
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("KEYBROKER_BIN_DIR", ROOT / ".build" / "debug"))
KEYBROKERD = BIN_DIR / "keybrokerd"
KEYBROKERCTL = BIN_DIR / "keybrokerctl"


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(top, instances):
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, settings in instances.items():
        lines.append(f"\n[instances.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def write_master_key(path):
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


def local_setup(workdir, prefix):
    """The pieces of a broker's configuration, for tests that write their own: a new directory
    under `workdir` (its name short: a socket path has at most 107 bytes) holding a master key,
    the top-level settings and a local instance on that key. Returns (dir, top, instance)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    os.chmod(d, 0o755)
    key = write_master_key(d / "master.key")
    top = {"socket": str(d / "kb.sock"), "state_dir": str(d / "state"), "admins": [me()]}
    instance = {"provider": "local", "clients": [me()], "master_key_file": str(key)}
    return d, top, instance


def wait_for_socket(path, proc, timeout):
    """True once something accepts connections on the Unix socket `path`; False if `proc` exits
    first or `timeout` seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            s.close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


def terminate(proc, sig=signal.SIGTERM, timeout=20):
    """Sends `sig` to `proc` if it still runs and waits up to `timeout` s for it, then kills it;
    returns its exit code (None for no process)."""
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode if proc else None


def me():
    return pwd.getpwuid(os.getuid()).pw_name


class Broker:
    """One keybrokerd process with its own directory: config, master key, state, socket, log."""

    def __init__(self, workdir, instances=None, extra=None, master_key=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.socket = str(self.dir / "kb.sock")
        self.state_dir = self.dir / "state"
        self.master_key = Path(master_key) if master_key else self.dir / "master.key"
        if not self.master_key.exists():
            write_master_key(self.master_key)
        self.config_path = self.dir / "keybroker.toml"
        self.log_path = self.dir / "keybrokerd.log"
        self.top = {"socket": self.socket, "state_dir": str(self.state_dir), "log_level": "info",
                    "admins": [me()]}
        if extra:
            self.top.update(extra)
            self.socket = self.top["socket"]
            self.state_dir = Path(self.top["state_dir"])
        self.instances = instances or {
            "default": {"provider": "local", "clients": [me()], "master_key_file": str(self.master_key)}}
        self.proc = None
        self.write_config()

    def write_config(self):
        self.config_path.write_text(render_config(self.top, self.instances))

    def start(self, wait=True, env=None, args=(), prefix=()):
        """`prefix`: a command that execs keybrokerd (prlimit, setpriv), so the pid stays the daemon's."""
        if env is not None:
            self.env = env  # restart() reuses it
        env = getattr(self, "env", None)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*prefix, str(KEYBROKERD), "--config", str(self.config_path), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        if not wait_for_socket(self.socket, self.proc, timeout):
            if self.proc.poll() is not None:
                raise RuntimeError(f"keybrokerd exited with {self.proc.returncode}:\n{self.log_text()}")
            raise RuntimeError(f"keybrokerd did not listen on {self.socket}:\n{self.log_text()}")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        code = terminate(self.proc, sig, timeout)
        if self.proc:
            self.log.close()
        self.proc = None
        return code

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text, timeout=30):
        """Whether `text` appears in the log within `timeout` s: lines written by the broker's own
        tasks (warm-up, prepare) may come after the answers a test has already read."""
        deadline = time.time() + timeout
        while text not in self.log_text():
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def ctl(self, *args, check=False, user=None, input=None):
        cmd = [str(KEYBROKERCTL), "--config", str(self.config_path), *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, input=input, timeout=60)

    def instance_dir(self, name="default"):
        return self.state_dir / name
