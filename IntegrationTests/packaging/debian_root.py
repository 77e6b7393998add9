"""A clean Debian bookworm root for the package tests, booted with its own systemd.

The root is made once by debootstrap (minbase, plus systemd) and cached in
.build-debootstrap/bookworm; each test session mounts an overlay over it, so the cache is never
written and every session starts from the same clean root. Packages apt downloads are kept in
.build-debootstrap/apt-archives between runs. The root's apt sources are the host's Debian
sources (deb822 stanzas signed by Debian's archive keyring), so `apt-get install` can pull only
Debian packages.

The root boots like a container: systemd as PID 1 of new PID, mount, UTS, IPC and cgroup
namespaces, chrooted into the overlay, in cgroups of its own under every hierarchy (removed at
the end). It shares the host's network, which apt needs to reach Debian's archive.
"""
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

SUITE = "bookworm"
INCLUDE = ["systemd", "systemd-sysv", "dbus", "ca-certificates", "procps"]
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def debian_sources():
    """The host's apt stanzas for Debian's own archive, as deb822 text."""
    stanzas = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            if DEBIAN_KEYRING in stanza and "Types: deb" in stanza:
                stanzas.append("\n".join(line for line in stanza.strip().splitlines() if not line.startswith("#")))
    assert stanzas, "no Debian archive in /etc/apt/sources.list.d/*.sources"
    return "\n\n".join(stanzas) + "\n"


def mirror():
    for line in debian_sources().splitlines():
        if line.startswith("URIs:"):
            uri = line.split()[1]
            if "security" not in uri:
                return uri
    raise AssertionError("no Debian mirror in the host's apt sources")


def unmount_below(path):
    """Mounts an interrupted debootstrap left inside its target (proc, sys), deepest first, so that
    removing the target can never reach into them."""
    prefix = str(Path(path).resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def ensure_base(cache):
    """The cached debootstrap root, made on first use (a few minutes, once)."""
    base = cache / SUITE
    if (base / ".debootstrap-complete").exists():
        return base
    partial = cache / f"{SUITE}.partial"
    unmount_below(partial)
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, str(partial),
                        mirror()], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"debootstrap failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    (partial / "etc/apt/sources.list").unlink(missing_ok=True)
    (partial / "etc/apt/sources.list.d/debian.sources").write_text(debian_sources())
    # No recommends, as a minimal server; packages stay in the bind-mounted archive cache.
    (partial / "etc/apt/apt.conf.d/90packaging-test").write_text(
        'APT::Install-Recommends "false";\nBinary::apt::APT::Keep-Downloaded-Packages "true";\n')
    (partial / "etc/hostname").write_text("keybroker-test\n")
    (partial / "etc/machine-id").write_text("")
    shutil.rmtree(partial / "var/cache/apt/archives", ignore_errors=True)
    (partial / "var/cache/apt/archives/partial").mkdir(parents=True)
    (partial / ".debootstrap-complete").write_text("")
    shutil.rmtree(base, ignore_errors=True)
    partial.rename(base)
    return base


BOOT = """#!/bin/sh
set -e
mount --make-rprivate /
mount -t overlay overlay -o lowerdir={base},upperdir={upper},workdir={work} {root}
mount --bind {archives} {root}/var/cache/apt/archives
mkdir -p {root}/dist
mount --bind {dist} {root}/dist
mount -t proc proc {root}/proc
mount --rbind /sys {root}/sys
mount --rbind /dev {root}/dev
cp /etc/resolv.conf {root}/etc/resolv.conf
mount --make-rshared {root}
exec chroot {root} /usr/bin/env -i container=keybroker-packaging \\
  /lib/systemd/systemd --system --log-target=console --log-level=warning
"""


class BootedRoot:
    """The overlay root with systemd running in it; `run` executes a command inside."""

    def __init__(self, base, workdir, archives, dist):
        self.base, self.dir, self.archives, self.dist = Path(base), Path(workdir), Path(archives), Path(dist)
        self.root = self.dir / "root"
        self.pid = None
        self.proc = None
        self.cgroups = []

    def _own_cgroups(self):
        """A new cgroup under this process's own in every hierarchy, for the root's systemd."""
        name = f"keybroker-packaging-{uuid.uuid4().hex[:8]}"
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            mount = {"": "unified", "name=systemd": "systemd"}.get(controllers, controllers)
            top = Path("/sys/fs/cgroup") / mount
            if not (top / "cgroup.procs").exists():
                continue
            d = top / path.lstrip("/") / name
            d.mkdir()
            self.cgroups.append(d)
            if controllers == "cpuset":  # a new cpuset has no CPUs until given its parent's
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (d / knob).write_text((d.parent / knob).read_text())

    def _enter_cgroups(self):
        for d in self.cgroups:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def boot(self):
        for d in ["upper", "work", "root"]:
            (self.dir / d).mkdir(parents=True)
        self.archives.mkdir(parents=True, exist_ok=True)
        script = self.dir / "boot.sh"
        script.write_text(BOOT.format(base=self.base, upper=self.dir / "upper", work=self.dir / "work",
                                      root=self.root, archives=self.archives, dist=self.dist))
        script.chmod(0o755)
        self._own_cgroups()
        self.log = open(self.dir / "boot.log", "wb")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--cgroup", str(script)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=self._enter_cgroups)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, f"the root's systemd did not start:\n{self.boot_log()}"
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "systemd":
                self.pid = int(pids[0])
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.3)
        raise AssertionError(f"the root's systemd did not finish booting:\n{self.boot_log()}")

    def boot_log(self):
        return (self.dir / "boot.log").read_text(errors="replace")

    def run(self, *cmd, check=True, timeout=600, input=None, env=None):
        """A command inside the root (its mount and PID namespaces, its / and cwd /)."""
        full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                    "DEBIAN_FRONTEND": "noninteractive"}
        full_env.update(env or {})
        argv = ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-r", "-w", "--", "/usr/bin/env", "-i"]
        argv += [f"{k}={v}" for k, v in full_env.items()] + [str(c) for c in cmd]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
        if check:
            command = " ".join(map(str, cmd))
            assert r.returncode == 0, f"{command} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        return r

    def path(self, inside):
        """A path inside the root, as the host sees it (through the overlay's mount namespace)."""
        return Path(f"/proc/{self.pid}/root") / str(inside).lstrip("/")

    def shutdown(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGRTMIN + 14)  # immediate poweroff: ends PID 1 and the namespace
            except ProcessLookupError:
                pass
        if self.proc:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        for top in self.cgroups:
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                try:
                    d.rmdir()
                except OSError:
                    pass
        shutil.rmtree(self.dir / "upper", ignore_errors=True)
