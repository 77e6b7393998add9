"""Start-up checks of keybrokerd: broken configurations, master keys, the socket path (issue 2)."""
import os
import signal
import socket
import subprocess
import time

import pytest

import kbproto as kb
from broker import KEYBROKERD, Broker, local_setup, render_config


def run_daemon(config_path, env=None, timeout=20):
    return subprocess.run([str(KEYBROKERD), "--config", str(config_path)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture()
def setup(workdir):
    return local_setup(workdir, "t")


def write(d, text):
    path = d / "keybroker.toml"
    path.write_text(text)
    return path


def assert_fails(result, *fragments):
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line, got: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("case,mutate,fragments", [
    ("unknown top-level key", lambda t, i: t.update(sockett="/x"), ["sockett", "unknown setting"]),
    ("unknown instance key", lambda t, i: i.update(master_kee="x"), ["instances.default.master_kee", "unknown setting"]),
    ("wrong type", lambda t, i: i.update(auto_create="yes"), ["instances.default.auto_create", "true or false"]),
    ("wrong type of list", lambda t, i: t.update(admins="root"), ["admins", "list"]),
    ("unknown provider", lambda t, i: i.update(provider="vault"), ["instances.default.provider", "unknown provider"]),
    ("missing master key", lambda t, i: i.pop("master_key_file"), ["instances.default.master_key_file", "needs a master key"]),
    ("unknown user", lambda t, i: i.update(clients=["no-such-user-x"]), ["instances.default.clients", "no-such-user-x"]),
    ("bad key spec", lambda t, i: i.update(key_spec="AES_512"), ["instances.default.key_spec"]),
])
def test_broken_config_stops_the_daemon_with_one_line(setup, case, mutate, fragments):
    d, top, instance = setup
    mutate(top, instance)
    path = write(d, render_config(top, {"default": instance}))
    result = run_daemon(path)
    assert_fails(result, str(path), *fragments)
    assert not os.path.exists(top["socket"])


def test_syntax_error_names_the_line(setup):
    d, top, instance = setup
    path = write(d, render_config(top, {"default": instance}) + "\nthis is not toml\n")
    assert_fails(run_daemon(path), str(path), "line")


def test_missing_config_file(setup):
    d, _, _ = setup
    assert_fails(run_daemon(d / "absent.toml"), "absent.toml", "No such file")


EX_CONFIG = 78  # keybroker.service: RestartPreventExitStatus=78


@pytest.mark.parametrize("case,mutate", [
    ("unknown key", lambda d, t, i: t.update(sockett="/x")),
    ("unknown user", lambda d, t, i: i.update(clients=["no-such-user-x"])),
    ("master key missing", lambda d, t, i: i.update(master_key_file=str(d / "absent.key"))),
    ("master key open to others", lambda d, t, i: os.chmod(i["master_key_file"], 0o644)),
    ("state_dir open to others", lambda d, t, i: (os.makedirs(t["state_dir"], mode=0o755), os.chmod(t["state_dir"], 0o755))),
    ("socket directory writable by all", lambda d, t, i: t.update(socket="/tmp/kb-exit-status.sock")),
])
def test_configuration_errors_exit_78_so_systemd_does_not_restart(setup, case, mutate):
    d, top, instance = setup
    mutate(d, top, instance)
    result = run_daemon(write(d, render_config(top, {"default": instance})))
    assert_fails(result)
    assert result.returncode == EX_CONFIG, (case, result.returncode, result.stderr)


def test_missing_config_file_exits_78(setup):
    d, _, _ = setup
    assert run_daemon(d / "absent.toml").returncode == EX_CONFIG


def test_state_dir_that_cannot_be_created_is_not_a_configuration_error(setup):
    """Its parent may be a file system that is not mounted yet: exit 1, and systemd tries again."""
    d, top, instance = setup
    top["state_dir"] = str(d / "not-mounted" / "state")
    result = run_daemon(write(d, render_config(top, {"default": instance})))
    assert_fails(result, "state_dir", "cannot create", "No such file")
    assert result.returncode == 1


def test_master_key_readable_by_others_is_refused(setup):
    d, top, instance = setup
    os.chmod(instance["master_key_file"], 0o644)
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), str(path), "instances.default.master_key_file", "readable by group or others", "chmod 600")


def test_master_key_readable_by_group_is_refused(setup):
    d, top, instance = setup
    os.chmod(instance["master_key_file"], 0o640)
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), "readable by group or others")


def test_master_key_of_wrong_length_is_refused(setup):
    d, top, instance = setup
    bad = d / "short.key"
    bad.write_text("abcd\n")
    os.chmod(bad, 0o600)
    instance["master_key_file"] = str(bad)
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), "64 hex characters")


def test_master_key_missing_file(setup):
    d, top, instance = setup
    instance["master_key_file"] = str(d / "nope.key")
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), "nope.key", "No such file")


def test_master_key_credential_needs_credentials_directory(setup):
    d, top, instance = setup
    instance.pop("master_key_file")
    instance["master_key_credential"] = "local-master-key"
    path = write(d, render_config(top, {"default": instance}))
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    assert_fails(run_daemon(path, env=env), "CREDENTIALS_DIRECTORY")


def test_master_key_credential_from_credentials_directory(setup):
    d, top, instance = setup
    creds = d / "creds"
    creds.mkdir(mode=0o700)
    os.rename(instance.pop("master_key_file"), creds / "local-master-key")
    instance["master_key_credential"] = "local-master-key"
    b = Broker(d / "b", instances={"default": instance}, extra={"socket": top["socket"], "state_dir": top["state_dir"]})
    b.start(env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)})
    try:
        with kb.Client(b.socket) as c:
            assert c.hello().status == kb.OK
            assert c.latest(1).status == kb.OK
    finally:
        assert b.stop() == 0


def test_world_writable_socket_directory_is_refused(setup):
    d, top, instance = setup
    open_dir = d / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    top["socket"] = str(open_dir / "kb.sock")
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), "writable by every user")


def test_state_dir_open_to_others_is_refused(setup):
    d, top, instance = setup
    os.mkdir(top["state_dir"], 0o755)
    os.chmod(top["state_dir"], 0o755)
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), "state_dir", "chmod 700")


def test_refuses_to_start_when_something_listens_on_the_socket(setup):
    d, top, instance = setup
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(top["socket"])
    listener.listen(1)
    try:
        path = write(d, render_config(top, {"default": instance}))
        assert_fails(run_daemon(path), "another server is listening", top["socket"])
        assert os.path.exists(top["socket"])
    finally:
        listener.close()


def test_replaces_a_stale_socket_file(setup):
    d, top, instance = setup
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(top["socket"])
    stale.close()  # the file stays, nothing listens
    b = Broker(d / "b", instances={"default": instance}, extra={"socket": top["socket"], "state_dir": top["state_dir"]})
    b.start()
    try:
        with kb.Client(b.socket) as c:
            assert c.hello().status == kb.OK
    finally:
        b.stop()


def test_refuses_a_socket_path_that_is_not_a_socket(setup):
    d, top, instance = setup
    open(top["socket"], "w").close()
    path = write(d, render_config(top, {"default": instance}))
    assert_fails(run_daemon(path), "is not a socket")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_keys_survive_restart(setup, sig):
    d, top, instance = setup
    b = Broker(d / "b", instances={"default": instance}, extra={"socket": top["socket"], "state_dir": top["state_dir"]})
    b.start()
    with kb.Client(b.socket) as c:
        c.hello()
        _, key = c.latest(7).key()
        c.rotate(7)
        _, key2 = c.latest(7).key()
    assert b.stop(sig) == 0
    assert not os.path.exists(b.socket), "socket file removed on exit"
    assert "keys zeroed" in b.log_text()
    b.start()
    try:
        with kb.Client(b.socket) as c:
            c.hello()
            assert c.latest(7).key() == (2, key2)
            assert c.get(7, 1).key_bytes() == key
    finally:
        b.stop()


def test_in_flight_request_is_answered_before_exit(setup):
    d, top, instance = setup
    b = Broker(d / "b", instances={"default": instance}, extra={"socket": top["socket"], "state_dir": top["state_dir"]})
    b.start()
    c = kb.Client(b.socket)
    c.hello()
    c.send(b"".join(kb.latest_key(10 + i, 500 + i) for i in range(20)))
    b.proc.send_signal(signal.SIGTERM)
    answered = 0
    try:
        for _ in range(20):
            r = c.recv()
            assert r.status == kb.OK
            answered += 1
    except ConnectionError:
        pass
    assert b.stop() == 0
    # whatever was answered was written to disk first
    assert len(list(b.instance_dir().glob("local-key.*"))) >= answered


def test_tampered_key_file_is_reported_corrupt_and_not_served(setup):
    d, top, instance = setup
    b = Broker(d / "b", instances={"default": instance}, extra={"socket": top["socket"], "state_dir": top["state_dir"]})
    b.start()
    with kb.Client(b.socket) as c:
        c.hello()
        c.latest(1)
        c.latest(2)
    b.stop()
    path = b.instance_dir() / "local-key.1.1"
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[25] ^= 0x01
    path.write_bytes(bytes(data))
    b.start()
    try:
        with kb.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
            assert r.status == kb.INTERNAL
            assert "corrupt" in r.message and str(path) in r.message
            assert c.latest(2).status == kb.OK, "other keys are still served"
            assert c.latest(1).status == kb.INTERNAL, "and the corrupt one is never served"
        assert "corrupt" in b.log_text()
    finally:
        b.stop()


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def test_keys_are_in_locked_memory_and_the_process_is_not_dumpable(setup):
    d, top, instance = setup
    b = Broker(d / "b", instances={"default": instance}, extra={"socket": top["socket"], "state_dir": top["state_dir"]})
    b.start()
    try:
        before = int(proc_status(b.proc.pid)["VmLck"].split()[0])
        with kb.Client(b.socket) as c:
            c.hello()
            for k in range(1, 400):
                assert c.latest(k).status == kb.OK
        after = int(proc_status(b.proc.pid)["VmLck"].split()[0])
        assert after > before, f"VmLck {before} kB -> {after} kB"
        # A non-dumpable process's /proc files belong to root and the core limit is zero.
        limits = open(f"/proc/{b.proc.pid}/limits").read()
        core = [l for l in limits.splitlines() if l.startswith("Max core file size")][0]
        assert core.split()[4:6] == ["0", "0"], core
        out = subprocess.run(["python3", "-c", f"import ctypes,sys; sys.exit(0)"], capture_output=True)
        assert out.returncode == 0
    finally:
        b.stop()
