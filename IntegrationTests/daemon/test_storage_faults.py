"""Storage faults: a full or read-only state directory, an unreadable key file (issue 6, item 2).

Each affected request fails with UNAVAILABLE and a sentence naming the path and the errno;
nothing already stored is damaged; service resumes by itself once the fault is removed."""
import os
import pwd
import subprocess

import pytest

import kbproto as kb
from broker import KEYBROKERD, Broker


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); storage-fault tests need CAP_SYS_ADMIN")


def umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture()
def small_fs_broker(workdir, request):
    b = Broker(workdir / f"fs-{request.node.name[:20]}")
    mount_tmpfs(b.state_dir, "256k")
    b.start()
    yield b
    b.stop()
    umount(b.state_dir)


def fill(path):
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    # the last few bytes: tmpfs may still take a partial block
    try:
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0")
                f.flush()
    except OSError:
        pass
    return filler


def test_full_state_directory(small_fs_broker):
    b = small_fs_broker
    with kb.Client(b.socket) as c:
        c.hello()
        stored = {k: c.latest(k).key() for k in (1, 2, 3)}
        filler = fill(b.state_dir)
        r = c.latest(4)
        assert r.status == kb.UNAVAILABLE, r
        assert str(b.instance_dir()) in r.message and "No space left on device" in r.message, r.message
        r = c.rotate(1)
        assert r.status == kb.UNAVAILABLE and "No space left" in r.message
        for k, answer in stored.items():
            assert c.latest(k).key() == answer, "existing keys keep being served"
        assert not [f for f in os.listdir(b.instance_dir()) if not f.startswith("local-key.") and f != "key-set"], "no partial file left"
        os.unlink(filler)
        version, key = c.latest(4).key()
        assert version == 1, "service resumes once there is space again"
        assert c.rotate(1).rotated() == [(1, 2)]
    b.stop()
    b.start()
    with kb.Client(b.socket) as c:
        c.hello()
        for k, (version, key) in stored.items():
            assert c.get(k, version).key_bytes() == key, "nothing stored was damaged"


def test_read_only_state_directory(small_fs_broker):
    b = small_fs_broker
    with kb.Client(b.socket) as c:
        c.hello()
        stored = c.latest(1).key()
        subprocess.run(["mount", "-o", "remount,ro", str(b.state_dir)], check=True)
        try:
            r = c.latest(2)
            assert r.status == kb.UNAVAILABLE, r
            assert str(b.instance_dir()) in r.message and "Read-only file system" in r.message, r.message
            assert c.latest(1).key() == stored
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(b.state_dir)], check=True)
        assert c.latest(2).status == kb.OK, "service resumes once the file system is writable"


def test_unreadable_key_file(workdir):
    """Root reads any file, so this broker runs as nobody, as keybrokerd does under systemd."""
    nobody = pwd.getpwnam("nobody")
    b = Broker(workdir / "unreadable")
    sockdir = b.dir / "run"
    sockdir.mkdir()
    os.chown(sockdir, nobody.pw_uid, nobody.pw_gid)
    b.top["socket"] = b.socket = str(sockdir / "kb.sock")
    b.instances["default"]["clients"] = ["root"]
    b.write_config()
    os.chown(b.master_key, nobody.pw_uid, nobody.pw_gid)
    os.makedirs(b.state_dir, mode=0o700)
    os.chown(b.state_dir, nobody.pw_uid, nobody.pw_gid)

    def start():
        b.log = open(b.log_path, "ab")
        b.proc = subprocess.Popen(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                                   str(KEYBROKERD), "--config", str(b.config_path)], stdout=b.log, stderr=subprocess.STDOUT)
        b.wait_ready()

    start()
    try:
        with kb.Client(b.socket) as c:
            c.hello()
            first = c.latest(1).key()
            second = c.latest(2).key()
        b.stop()
        victim = b.instance_dir() / "local-key.1.1"
        os.chmod(victim, 0)
        start()
        with kb.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
            assert r.status == kb.UNAVAILABLE, r
            assert str(victim) in r.message and "Permission denied" in r.message, r.message
            assert c.latest(2).key() == second, "other keys are served"
            os.chmod(victim, 0o400)
            assert c.latest(1).key() == first, "a failed load is not remembered: it works once the file is readable"
        assert str(victim) in b.log_text()
    finally:
        b.stop()
