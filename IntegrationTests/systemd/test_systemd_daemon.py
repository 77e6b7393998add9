"""keybrokerd under systemd: socket activation, sd_notify, the watchdog and the journal (issue 5).

systemd itself is not running here, so the tests play its part with its own tools and protocols:
`systemd-socket-activate` passes the socket, a datagram socket stands in for NOTIFY_SOCKET, and
for the journal a datagram socket at the journal's path receives the native protocol."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import kbproto as kb
from broker import KEYBROKERD, Broker
from sdnotify import NotifyListener

JOURNAL_SOCKET = "/run/systemd/journal/socket"


@pytest.fixture(scope="module")
def activated(workdir):
    """keybrokerd started by systemd-socket-activate on the first connection, with a watchdog."""
    b = Broker(workdir / "activated")
    activation_socket = str(b.dir / "activated.sock")
    notify = NotifyListener(b.dir / "notify.sock")
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", activation_socket,
         "-E", f"NOTIFY_SOCKET={notify.path}", "-E", "WATCHDOG_USEC=600000",
         str(KEYBROKERD), "--config", str(b.config_path)],
        stdout=open(b.log_path, "ab"), stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while not os.path.exists(activation_socket) and time.time() < deadline:
        time.sleep(0.05)
    os.chmod(activation_socket, 0o660)  # what SocketMode=0660 in keybroker.socket does
    yield b, proc, activation_socket, notify
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    notify.close()


def test_first_client_is_served_over_the_inherited_socket(activated):
    b, proc, path, _ = activated
    with kb.Client(path, timeout=30) as c:
        assert c.hello().status == kb.OK
        version, key = c.latest(1).key()
        assert version == 1 and len(key) == 32
    assert not os.path.exists(b.socket), "with a socket passed by systemd the configured path is not bound"
    assert "listening on the socket passed by systemd (fd 3)" in b.log_text()


def test_inherited_socket_open_to_every_user_is_refused(workdir):
    b = Broker(workdir / "open-activated")
    path = str(b.dir / "open.sock")
    proc = subprocess.Popen(["systemd-socket-activate", "-l", path, str(KEYBROKERD), "--config", str(b.config_path)],
                            stdout=open(b.log_path, "ab"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.05)
        os.chmod(path, 0o666)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)  # starts keybrokerd, which refuses the socket and exits
        s.close()
        deadline = time.time() + 10
        while "SocketMode=0660" not in b.log_text() and time.time() < deadline:
            time.sleep(0.05)
        assert "is open to every user (mode 666)" in b.log_text()
    finally:
        proc.kill()
        proc.wait()


def test_ready_status_and_watchdog_are_notified(activated):
    _, _, path, notify = activated
    with kb.Client(path, timeout=30) as c:
        c.hello()
    assert notify.collect(lambda m: "READY=1" in m and sum(x == "WATCHDOG=1" for x in m) >= 2), notify.messages
    statuses = [m for m in notify.messages if m.startswith("STATUS=")]
    assert statuses and any("instance" in s for s in statuses), statuses
    assert notify.messages.index("READY=1") < notify.messages.index("WATCHDOG=1")


def test_stopping_is_notified_on_sigterm(activated):
    _, proc, path, notify = activated
    with kb.Client(path, timeout=30) as c:
        c.hello()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert notify.collect(lambda m: "STOPPING=1" in m, timeout=5), notify.messages


def test_journal_unavailable_falls_back_to_stderr_without_losing_lines(workdir):
    if os.path.exists(JOURNAL_SOCKET):
        pytest.skip("a real journald listens here; the fallback cannot be provoked without stopping it")
    b = Broker(workdir / "nojournal")
    log = open(b.log_path, "ab")
    st = os.fstat(log.fileno())
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    b.log = log
    b.proc = subprocess.Popen([str(KEYBROKERD), "--config", str(b.config_path)], stdout=log, stderr=subprocess.STDOUT, env=env)
    b.wait_ready()
    with kb.Client(b.socket) as c:
        c.hello()
        for k in range(1, 21):
            c.latest(k)
    assert b.stop() == 0
    text = b.log_text()
    for k in range(1, 21):
        assert f"generated key {k} version 1" in text
    assert "ready: instances default" in text and "keys zeroed" in text
    # under the journal no timestamp is added: the journal has its own
    assert not text.splitlines()[0][:4].isdigit()


def parse_native(datagram):
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode()
            i = nl + 1
        else:  # binary-safe form: NAME\n<u64 le length><value>\n
            n = int.from_bytes(datagram[nl + 1:nl + 9], "little")
            fields[line.decode()] = datagram[nl + 9:nl + 9 + n].decode()
            i = nl + 9 + n + 1
    return fields


def test_native_journal_entries_carry_fields(workdir):
    if os.path.exists(JOURNAL_SOCKET):
        pytest.skip("a real journald listens here; checked by hand with journalctl MESSAGE_ID=… instead")
    os.makedirs(os.path.dirname(JOURNAL_SOCKET), exist_ok=True)
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(JOURNAL_SOCKET)
    journal.settimeout(0.5)
    try:
        b = Broker(workdir / "journal")
        log = open(b.log_path, "ab")
        st = os.fstat(log.fileno())
        b.log = log
        b.proc = subprocess.Popen([str(KEYBROKERD), "--config", str(b.config_path)], stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        b.wait_ready()
        with kb.Client(b.socket) as c:
            c.hello()
            c.latest(42)
        b.stop()
        entries = []
        try:
            while True:
                entries.append(parse_native(journal.recv(65536)))
        except socket.timeout:
            pass
        generated = [e for e in entries if e.get("MESSAGE", "").startswith("generated key 42")]
        assert generated, entries
        e = generated[0]
        assert e["PRIORITY"] == "6"
        assert e["KEYBROKER_INSTANCE"] == "default"
        assert e["KEYBROKER_KEY_ID"] == "42" and e["KEYBROKER_KEY_VERSION"] == "1"
        assert len(e["MESSAGE_ID"]) == 32
        assert e["SYSLOG_IDENTIFIER"] == "keybrokerd"
        assert any(x.get("MESSAGE_ID") and x["MESSAGE"].startswith("ready") for x in entries)
        assert "generated key 42" not in b.log_text(), "sent to the journal, not duplicated on stderr"
    finally:
        journal.close()
        os.unlink(JOURNAL_SOCKET)
