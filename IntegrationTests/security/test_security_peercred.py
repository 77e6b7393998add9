"""What SO_PEERCRED proves and what it does not (docs/security.md, "What the peer check proves"):
one test per claim there. The broker trusts the kernel's record of who called connect(), taken
at that moment; it cannot see what the process does with the connection afterwards.
"""
import grp
import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kbproto as kb
from broker import Broker, me
from localusers import LocalUsers

ATTACKER = Path(__file__).resolve().parent / "attacker.py"


@pytest.fixture(scope="module")
def users():
    u = LocalUsers("c")
    listed = u.group("listed")  # no members in /etc/group
    names = {role: u.user(role).pw_name for role in ("alice", "bob", "mallory", "pete")}
    names["listed"] = listed.gr_name
    yield u, names
    u.cleanup()


@pytest.fixture(scope="module")
def broker(workdir, users):
    _, names = users
    b = Broker(workdir / "peercred")
    b.instances["default"]["clients"] = [me(), names["alice"], f"@{names['listed']}"]
    b.instances["other"] = {"provider": "local", "clients": [names["bob"]], "master_key_file": str(b.master_key)}
    b.write_config()
    b.start()
    os.chmod(b.socket, 0o666)  # everyone may ask; SO_PEERCRED decides
    with kb.Client(b.socket) as c:
        c.hello()
        c.latest(1)
    yield b
    b.stop()


def run(users, role, *args, command=None):
    u, names = users
    argv = command or u.python(names[role], ATTACKER, *args)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def uid(users, role):
    return pwd.getpwnam(users[1][role]).pw_uid


def test_what_a_peer_says_about_itself_proves_nothing(broker, users):
    # bob may use "other"; calling himself root in HELLO's client name changes nothing
    assert run(users, "bob", "connect", broker.socket, "default", "root")["status"] == "DENIED"
    assert run(users, "bob", "connect", broker.socket, "other", "root") == {"status": "OK", "latest": "OK"}


def test_root_in_a_user_namespace_is_its_user_outside(broker, users):
    u, names = users
    # Debian's python3: inside the namespace the test's own interpreter (under /root) is out of reach.
    argv = u.command(names["mallory"], ["unshare", "--user", "--map-root-user", "/usr/bin/python3", str(ATTACKER), "connect", broker.socket])
    offset = broker.log_path.stat().st_size
    assert run(users, "mallory", command=argv)["status"] == "closed"
    log = broker.log_path.read_text()[offset:]
    assert f"denied uid {uid(users, 'mallory')} " in log, log


def test_the_pid_is_the_connecting_process(broker, users):
    u, names = users
    offset = broker.log_path.stat().st_size
    # pete is denied nowhere else, so his first denial is logged, not counted into a later line
    proc = subprocess.Popen(u.python(names["pete"], ATTACKER, "connect", broker.socket), stdout=subprocess.PIPE, text=True)
    proc.wait(timeout=30)
    time.sleep(0.2)
    log = broker.log_path.read_text()[offset:]
    lines = [l for l in log.splitlines() if f"denied uid {uid(users, 'pete')} " in l]
    assert lines and f"(pid {proc.pid}) at connect" in lines[0], lines


def test_a_passed_descriptor_keeps_the_identity_of_the_process_that_connected(broker, users, workdir):
    u, names = users
    meeting = workdir / "meeting"
    meeting.mkdir(mode=0o1777, exist_ok=True)
    os.chmod(meeting, 0o1777)
    rendezvous = meeting / "pass.sock"
    receiver = subprocess.Popen(u.python(names["mallory"], ATTACKER, "receive-fd", rendezvous), stdout=subprocess.PIPE, text=True)
    assert json.loads(receiver.stdout.readline())["listening"]
    assert run(users, "alice", "pass-fd", broker.socket, rendezvous)["passed"]
    out = json.loads(receiver.stdout.readline())
    receiver.wait(timeout=30)
    # mallory is in no list, yet the connection alice opened serves her as alice
    assert out["hello"] == "OK" and out["latest"] == "OK" and len(out["key"]) == 64, out
    assert run(users, "mallory", "connect", broker.socket)["status"] == "closed"


def test_dropped_privileges_keep_the_identity_of_the_connect(broker, users):
    _, names = users
    mallory = pwd.getpwnam(names["mallory"])
    out = run(users, None, command=[sys.executable, str(ATTACKER), "connect-then-drop", broker.socket, str(mallory.pw_uid), str(mallory.pw_gid)])
    assert out["uid"] == mallory.pw_uid
    # still root (an admin) on the connection made before setuid: every instance visible
    assert out["hello"] == "OK" and out["instances"] == ["default", "other"], out
    assert out["new_connection"] == "closed", "a new connection is judged by the new identity"


def test_supplementary_groups_are_not_seen_only_the_primary_gid_and_the_group_database(broker, users):
    u, names = users
    listed = grp.getgrnam(names["listed"]).gr_gid
    mallory = names["mallory"]
    argv = lambda *ids: ["setpriv", f"--reuid={mallory}", *ids, sys.executable, str(ATTACKER), "connect", broker.socket]
    # the listed group as a supplementary group of the process, not in /etc/group: not seen
    assert run(users, None, command=argv(f"--regid={mallory}", f"--groups={listed}"))["status"] == "closed"
    # the listed group as the primary gid: SO_PEERCRED carries it
    assert run(users, None, command=argv(f"--regid={listed}", "--clear-groups")) == {"status": "OK", "latest": "OK"}
