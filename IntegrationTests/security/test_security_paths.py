"""The broker trusts only paths it owns (issue 11): the configuration, master keys, state_dir,
instance directories and the socket directory, and every directory above them, belong to root or
keybrokerd's user, are writable by no one else and are reached through no symbolic link; files
are opened without following links or blocking on FIFOs. Each refusal is one line naming the
path, the owner and mode found, and the fix; nothing is ever changed by path.
"""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

import kbproto as kb
from broker import KEYBROKERCTL, KEYBROKERD, Broker, local_setup, me, render_config, wait_for_socket
from localusers import LocalUsers


@pytest.fixture(scope="module")
def users():
    u = LocalUsers("f")
    group = u.group("g")
    eve = u.user("eve", groups=[group.gr_name])
    yield u, eve, group
    u.cleanup()


@pytest.fixture()
def setup(workdir):
    return local_setup(workdir, "p")


def write_config(d, top, instance):
    path = d / "keybroker.toml"
    path.write_text(render_config(top, {"default": instance}))
    return path


def run_daemon(config, timeout=20):
    return subprocess.run([str(KEYBROKERD), "--config", str(config)], capture_output=True, text=True, timeout=timeout)


def refused(result, *fragments):
    """The daemon refused to start with one line containing every fragment; returns the line."""
    assert result.returncode != 0, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line, got: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- the socket directory --------------------------------------------------------------------

def test_socket_directory_writable_by_another_group_is_refused(setup, users):
    """Issue 11: with the socket directory 0770 and another group, a member replaced the socket
    with her own and a listed client took key bytes 4141…41 from it."""
    _, eve, group = users
    d, top, instance = setup
    sockdir = d / "run"
    sockdir.mkdir()
    os.chown(sockdir, 0, group.gr_gid)
    os.chmod(sockdir, 0o770)
    top["socket"] = str(sockdir / "kb.sock")
    line = refused(run_daemon(write_config(d, top, instance)), f"socket directory {sockdir} is writable by group {group.gr_name}",
                   "mode 0770", f"run: chmod go-w {sockdir}")
    assert mode(sockdir) == 0o770 and not (sockdir / "kb.sock").exists(), line


def test_socket_directory_of_another_user_is_refused(setup, users):
    _, eve, _ = users
    d, top, instance = setup
    sockdir = d / "run"
    sockdir.mkdir(mode=0o755)
    os.chown(sockdir, eve.pw_uid, eve.pw_gid)
    top["socket"] = str(sockdir / "kb.sock")
    refused(run_daemon(write_config(d, top, instance)), f"{sockdir} belongs to {eve.pw_name} (uid {eve.pw_uid})", "run: chown")


def test_socket_directory_through_a_symbolic_link_is_refused(setup, users):
    _, eve, _ = users
    d, top, instance = setup
    theirs = d / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, eve.pw_uid, eve.pw_gid)
    (d / "run").symlink_to(theirs)
    top["socket"] = str(d / "run" / "kb.sock")
    refused(run_daemon(write_config(d, top, instance)), f"{d}/run is a symbolic link to {theirs}", "name the real directory")


def test_socket_mode_is_set_on_the_descriptor_never_by_path(setup):
    """Issue 11: chmod(path) after bind() let a member of the socket directory's group swap the
    temporary name for a symbolic link and make a root-only file group-readable (7 of 10 tries)."""
    d, top, instance = setup
    trace = d / "strace.out"
    config = write_config(d, top, instance)
    proc = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=chmod,fchmodat,fchmod,bind,rename,renameat,renameat2",
                             str(KEYBROKERD), "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    daemon = None
    try:
        deadline = time.time() + 30
        while not os.path.exists(top["socket"]) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.001)
        first_mode = mode(top["socket"])  # the first moment the name exists
        assert wait_for_socket(top["socket"], proc, 30)
        with kb.Client(top["socket"]) as c:
            assert c.hello().status == kb.OK
        daemon = int(open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()[0])
    finally:
        os.kill(daemon, signal.SIGTERM) if daemon else proc.kill()
        proc.wait(timeout=30)
    calls = trace.read_text()
    assert first_mode == 0o660, oct(first_mode)
    assert not re.search(r"\b(chmod|fchmodat2?)\(", calls), calls
    assert not re.search(r"\brename(at2?)?\(", calls), "the socket is bound at its name, not renamed into place"
    assert re.search(r"fchmod\(\d+, 0660\)", calls) and f'bind(' in calls, calls


def test_socket_path_of_107_bytes_is_served(setup):
    """Issue 11: a socket path that passed the config check (107 bytes) failed at listen: the
    temporary name was longer."""
    d, top, instance = setup
    room = 107 - len(str(d)) - len("/") - len("/kb.sock")
    long_dir = d / ("s" * room)
    long_dir.mkdir(mode=0o755)
    top["socket"] = str(long_dir / "kb.sock")
    assert len(top["socket"].encode()) == 107
    b = Broker(d / "b", instances={"default": instance}, extra=top)
    b.start()
    try:
        with kb.Client(b.socket) as c:
            assert c.hello().status == kb.OK
    finally:
        assert b.stop() == 0


# --- state_dir and instance directories ------------------------------------------------------

def test_state_dir_of_another_user_is_refused(setup, users):
    """Issue 11: that user moved default/ aside and the restarted broker silently created a new
    key 1 (the old data unreadable)."""
    _, eve, _ = users
    d, top, instance = setup
    os.mkdir(top["state_dir"], 0o700)
    os.chown(top["state_dir"], eve.pw_uid, eve.pw_gid)
    refused(run_daemon(write_config(d, top, instance)), "state_dir", f"{top['state_dir']} belongs to {eve.pw_name}",
            f"run: chown {me()} {top['state_dir']}")
    assert os.listdir(top["state_dir"]) == [], "nothing was created in it"


def test_state_dir_open_to_every_user_is_refused(setup):
    d, top, instance = setup
    os.mkdir(top["state_dir"])
    os.chmod(top["state_dir"], 0o777)
    refused(run_daemon(write_config(d, top, instance)), "state_dir", "is open to group or others", "mode 0777", "chmod 700")
    assert mode(top["state_dir"]) == 0o777, "the daemon changes no mode"


def test_directory_above_state_dir_writable_by_a_group_is_refused(setup, users):
    _, _, group = users
    d, top, instance = setup
    above = d / "lib"
    above.mkdir()
    os.chown(above, 0, group.gr_gid)
    os.chmod(above, 0o775)
    top["state_dir"] = str(above / "state")
    refused(run_daemon(write_config(d, top, instance)), f"{above} (above {above}/state) is writable by group {group.gr_name}")


@pytest.mark.parametrize("how", ["owner", "mode"])
def test_instance_directory_not_owned_is_refused(setup, users, how):
    _, eve, _ = users
    d, top, instance = setup
    os.mkdir(top["state_dir"], 0o700)
    instance_dir = Path(top["state_dir"]) / "default"
    instance_dir.mkdir(mode=0o700)
    if how == "owner":
        os.chown(instance_dir, eve.pw_uid, eve.pw_gid)
        fragment = f"belongs to {eve.pw_name}"
    else:
        os.chmod(instance_dir, 0o777)
        fragment = "is writable by every user"
    refused(run_daemon(write_config(d, top, instance)), 'instance "default"', f"key directory {instance_dir}", fragment)


def test_fifo_planted_as_a_key_file_is_refused_at_start_and_sigterm_works(setup):
    """Issue 11: FIFOs planted as key files hung the warm-up in open() and SIGTERM was ignored."""
    d, top, instance = setup
    b = Broker(d / "b", instances={"default": instance}, extra=top)
    b.start()
    with kb.Client(b.socket) as c:
        c.hello()
        assert c.latest(1).status == kb.OK
        # planted while running: never adopted, never opened
        os.mkfifo(b.instance_dir() / "local-key.1.2", 0o600)
        start = time.time()
        assert c.get(1, 2).status == kb.NOT_FOUND
        assert time.time() - start < 2
    start = time.time()
    assert b.stop(signal.SIGTERM) == 0
    assert time.time() - start < 5
    result = run_daemon(b.config_path, timeout=20)
    refused(result, f"{b.instance_dir()}/local-key.1.2 is a FIFO, not a key file", "move it out of the key directory")


# --- master key and configuration ------------------------------------------------------------

def test_master_key_of_another_user_is_refused(setup, users):
    _, eve, _ = users
    d, top, instance = setup
    os.chown(instance["master_key_file"], eve.pw_uid, eve.pw_gid)
    refused(run_daemon(write_config(d, top, instance)), "instances.default.master_key_file", f"belongs to {eve.pw_name}",
            f"run: chown root {instance['master_key_file']}")


def test_master_key_in_a_directory_every_user_can_write_is_refused(setup):
    d, top, instance = setup
    open_dir = d / "keys"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    key = Path(shutil.move(instance["master_key_file"], open_dir / "master.key"))
    instance["master_key_file"] = str(key)
    refused(run_daemon(write_config(d, top, instance)), f"{open_dir} (above {key}) is writable by every user", "chmod go-w")


@pytest.mark.parametrize("case", ["0666", "group", "owner", "symlink"])
def test_configuration_not_owned_is_refused(setup, users, case):
    """Issue 11: with the configuration at mode 0666, a user who added herself to admins got
    every key after the next restart."""
    _, eve, group = users
    d, top, instance = setup
    config = write_config(d, top, instance)
    if case == "0666":
        os.chmod(config, 0o666)
        fragment = "is writable by every user (mode 0666"
    elif case == "group":
        os.chown(config, 0, group.gr_gid)
        os.chmod(config, 0o664)
        fragment = f"is writable by group {group.gr_name}"
    elif case == "owner":
        os.chown(config, eve.pw_uid, eve.pw_gid)
        fragment = f"belongs to {eve.pw_name}"
    else:
        real = d / "real.toml"
        config.rename(real)
        config.symlink_to(real)
        fragment = "is a symbolic link"
    before = mode(config)
    refused(run_daemon(config), f"{config}: cannot use the configuration", fragment)
    assert mode(config) == before


def test_configuration_that_is_a_fifo_is_refused_at_once(setup):
    """Issue 11: --config pointing at a FIFO blocked for ever (keybrokerd and keybrokerctl)."""
    d, _, _ = setup
    fifo = d / "fifo.toml"
    os.mkfifo(fifo, 0o644)
    start = time.time()
    refused(run_daemon(fifo, timeout=10), "is a FIFO, not a regular file")
    ctl = subprocess.run([str(KEYBROKERCTL), "--config", str(fifo), "status"], capture_output=True, text=True, timeout=10)
    assert ctl.returncode == 1 and "is a FIFO" in ctl.stderr, ctl.stderr
    assert time.time() - start < 5
