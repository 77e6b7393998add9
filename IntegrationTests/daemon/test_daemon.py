"""keybrokerd over a real Unix socket, as a real process (issue 2)."""
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kbproto as kb
from broker import Broker, me

SUPPORT = Path(kb.__file__).resolve().parent


@pytest.fixture(scope="module")
def broker(workdir):
    b = Broker(workdir / "daemon", instances=None)
    b.instances = {
        "default": {"provider": "local", "clients": [me(), "nobody"], "master_key_file": str(b.master_key)},
        "short": {"provider": "local", "clients": [me()], "key_spec": "AES_128", "master_key_file": str(b.master_key)},
        "fixed": {"provider": "local", "clients": [me()], "auto_create": False, "master_key_file": str(b.master_key)},
    }
    b.top["admins"] = []
    b.write_config()
    b.start()
    # Other uids must reach the socket to be turned away by the broker itself, not by its mode.
    os.chmod(b.socket, 0o666)
    yield b
    b.stop()


def connect(broker, instance="default"):
    c = kb.Client(broker.socket)
    r = c.hello(instance=instance)
    assert r.status == kb.OK, r
    return c


def test_hello_answers_protocol_and_server(broker):
    with kb.Client(broker.socket) as c:
        r = c.hello()
        assert r.status == kb.OK
        assert r.op == kb.OP_HELLO
        (version,) = struct.unpack(">H", r.body[:2])
        assert version == 1
        assert r.body[4:].decode().startswith("keybrokerd")


def test_hello_is_required_first(broker):
    with kb.Client(broker.socket) as c:
        r = c.latest(1)
        assert r.status == kb.BAD_REQUEST
        assert "HELLO" in r.message
        assert c.closed_by_peer()


def test_second_hello_cannot_switch_instance(broker):
    with connect(broker) as c:
        r = c.hello(instance="short")
        assert r.status == kb.BAD_REQUEST
        assert '"default"' in r.message
        assert c.closed_by_peer()


def test_unsupported_protocol_version(broker):
    with kb.Client(broker.socket) as c:
        r = c.hello(protocol=2)
        assert r.status == kb.UNSUPPORTED
        assert "version 2" in r.message
        assert c.closed_by_peer()


def test_latest_creates_version_1_with_the_configured_length(broker):
    with connect(broker) as c:
        r = c.latest(101)
        assert r.status == kb.OK, r
        version, key = r.key()
        assert (version, len(key)) == (1, 32)
        assert (broker.instance_dir() / "local-key.101.1").exists()
    with connect(broker, "short") as c:
        version, key = c.latest(101).key()
        assert (version, len(key)) == (1, 16)


def test_get_key_returns_the_same_bytes(broker):
    with connect(broker) as c:
        _, key = c.latest(102).key()
        r = c.get(102, 1)
        assert r.status == kb.OK
        assert r.key_bytes() == key
    with connect(broker) as c:
        assert c.get(102, 1).key_bytes() == key


def test_unknown_version_is_not_found(broker):
    with connect(broker) as c:
        c.latest(103)
        r = c.get(103, 2)
        assert r.status == kb.NOT_FOUND
        assert "version 2" in r.message
        r = c.get(0, 1)
        assert r.status == kb.NOT_FOUND
        assert c.latest(0).status == kb.NOT_FOUND
        # the connection stays usable after an ordinary error
        assert c.latest(103).status == kb.OK


def test_auto_create_off_gives_not_found(broker):
    with connect(broker, "fixed") as c:
        r = c.latest(1)
        assert r.status == kb.NOT_FOUND
        assert "auto_create" in r.message
    assert not list((broker.instance_dir("fixed")).glob("local-key.*"))


def test_rotate_gives_next_version_and_old_versions_stay_readable(broker):
    with connect(broker) as c:
        _, v1 = c.latest(104).key()
        r = c.rotate(104)
        assert r.status == kb.OK
        assert r.rotated() == [(104, 2)]
        version, v2 = c.latest(104).key()
        assert version == 2 and v2 != v1
        assert c.get(104, 1).key_bytes() == v1
        assert c.get(104, 2).key_bytes() == v2


def test_rotate_all_rotates_every_key_of_the_instance_only(broker):
    with connect(broker, "short") as c:
        c.latest(1)
        c.latest(2)
        before = {k: c.latest(k).key()[0] for k in (1, 2, 101)}
        r = c.rotate(kb.ALL_KEYS)
        assert r.status == kb.OK
        assert dict(r.rotated()) == {k: v + 1 for k, v in before.items()}
    with connect(broker) as c:
        assert c.latest(101).key()[0] == 1, "ROTATE of instance short touched instance default"


def test_status_is_json_for_the_bound_instance(broker):
    with connect(broker, "short") as c:
        r = c.status()
        assert r.status == kb.OK
        doc = json.loads(r.message)
        assert doc["protocol"] == 1
        assert list(doc["instances"]) == ["short"], "a client sees only its own instance"
        assert doc["instances"]["short"]["provider"] == "local"
        assert doc["instances"]["short"]["key_ids"] >= 2


def test_responses_may_come_out_of_order_and_match_by_id(broker):
    with connect(broker) as c:
        c.latest(105)
        # pipeline: a creation (slow path) then many cached lookups
        c.send(kb.latest_key(1000, 106) + b"".join(kb.get_key(2000 + i, 105, 1) for i in range(50)))
        ids = {c.recv().request_id for _ in range(51)}
        assert ids == {1000} | {2000 + i for i in range(50)}


def test_32_clients_1000_mixed_requests_each_all_correct(broker):
    with connect(broker) as c:
        truth = {k: c.latest(k).key() for k in range(200, 216)}
    errors = []

    def worker(n):
        rng = random.Random(n)
        try:
            with connect(broker) as c:
                pending, data = {}, []
                for i in range(1000):
                    rid, k = i + 1, rng.randrange(200, 216)
                    if rng.random() < 0.5:
                        data.append(kb.latest_key(rid, k))
                        pending[rid] = ("latest", k)
                    else:
                        data.append(kb.get_key(rid, k, 1))
                        pending[rid] = ("get", k)
                    if len(pending) == 50 or i == 999:
                        c.send(b"".join(data))
                        data = []
                        while pending:
                            r = c.recv()
                            kind, k = pending.pop(r.request_id)
                            assert r.status == kb.OK, r
                            if kind == "latest":
                                assert r.key() == truth[k]
                            else:
                                assert r.key_bytes() == truth[k][1]
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


def test_half_frame_stall_does_not_delay_others(broker):
    stalled = kb.Client(broker.socket)
    stalled.hello()
    stalled.send(b"\x00\x00")  # half a length prefix, then nothing
    half_body = kb.Client(broker.socket)
    half_body.send(kb.hello()[:9])  # header and part of the body
    try:
        with connect(broker) as c:
            for i in range(100):
                assert c.latest(107).status == kb.OK
    finally:
        stalled.close()
        half_body.close()


def malformed_case(broker, data):
    c = kb.Client(broker.socket, timeout=5)
    c.hello()
    c.send(data)
    try:
        r = c.recv()
    except ConnectionError:
        r = None
    closed = c.closed_by_peer()
    c.close()
    return r, closed


@pytest.mark.parametrize("name,data,status", [
    ("length 0", b"\x00\x00\x00\x00", None),
    ("length over 65536", struct.pack(">IBI", 65537, 2, 77), kb.BAD_REQUEST),
    ("length 4 GiB", struct.pack(">IBI", 0xFFFFFFFF, 2, 77), kb.BAD_REQUEST),
    ("shorter than a header", kb.frame(b"\x02\x00\x00"), None),
    ("unknown op", kb.request(0x42, 77, b""), kb.UNSUPPORTED),
    ("short body", kb.request(kb.OP_GET_KEY, 77, b"\x00\x00\x00\x01"), kb.BAD_REQUEST),
    ("trailing bytes", kb.request(kb.OP_LATEST_KEY, 77, b"\x00\x00\x00\x01\xff"), kb.BAD_REQUEST),
    ("bad UTF-8", kb.request(kb.OP_HELLO, 77, b"\x00\x01\x00\x02\xc3\x28\x00\x00"), kb.BAD_REQUEST),
    ("string longer than body", kb.request(kb.OP_HELLO, 77, b"\x00\x01\x00\x50ab"), kb.BAD_REQUEST),
])
def test_malformed_frames_are_refused_and_the_daemon_keeps_serving(broker, name, data, status):
    r, closed = malformed_case(broker, data)
    if status is None:
        assert r is None, f"{name}: no request id, so no answer: {r}"
    else:
        assert r is not None and r.status == status and r.request_id == 77, f"{name}: {r}"
        assert r.message
    assert closed, f"{name}: connection left open"
    with connect(broker) as c:
        assert c.latest(108).status == kb.OK
    assert broker.proc.poll() is None


def run_as_nobody(broker, instance):
    code = (
        "import sys; sys.path.insert(0, %r); import kbproto as kb\n"
        "c = kb.Client(%r)\n"
        "r = c.hello(instance=%r)\n"
        "print(kb.STATUS_NAMES[r.status], r.message if r.status else '', c.closed_by_peer() if r.status else c.latest(1).status)\n"
    ) % (str(SUPPORT), broker.socket, instance)
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=30)


def test_unlisted_peer_is_denied_and_logged(broker):
    out = run_as_nobody(broker, "short")
    assert out.returncode == 0, out.stderr
    status, rest = out.stdout.split(" ", 1)
    assert status == "DENIED"
    assert "65534" in rest and rest.strip().endswith("True"), "denied with uid named, then closed"
    assert 'denied uid 65534' in broker.log_text()


def test_listed_peer_of_another_uid_is_served(broker):
    out = run_as_nobody(broker, "default")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "OK"
    assert out.stdout.split()[-1] == "0"  # LATEST_KEY status OK


def test_unknown_instance_is_denied(broker):
    with kb.Client(broker.socket) as c:
        r = c.hello(instance="nope")
        assert r.status == kb.DENIED
        assert "nope" in r.message


def test_socket_mode_is_0660_when_bound(workdir):
    b = Broker(workdir / "mode")
    b.start()
    try:
        assert oct(os.stat(b.socket).st_mode & 0o777) == "0o660"
    finally:
        b.stop()
