"""The attacks of issue 11, run as another local user (LocalUsers.python). Each prints one JSON
line with what it achieved, which the test checks. A hand-written client, not a fake broker.

  attacker.py hold SOCKET SECONDS COUNT [INSTANCE]   keep COUNT connections open, reopened as the
                                                     broker closes them; with INSTANCE each says
                                                     HELLO first, without it none ever does
  attacker.py hello-flood SOCKET SECONDS INSTANCE    denied HELLOs with huge, newline and ESC names
  attacker.py pipeline SOCKET SECONDS OP             HELLO, then requests (status, latest, or
                                                     mixed: 60 new keys, then status) sent as fast
                                                     as the broker takes them, never read
  attacker.py probe SOCKET SECONDS [INSTANCE]        a listed client: connect, HELLO, LATEST_KEY 1
                                                     every 0.25 s; the latency of each, or its error
  attacker.py pass-fd SOCKET RENDEZVOUS              connect, then pass the descriptor (SCM_RIGHTS)
  attacker.py receive-fd RENDEZVOUS                  take a passed descriptor and use it
  attacker.py connect-then-drop SOCKET UID GID       (as root) connect, setuid, then use it
  attacker.py connect SOCKET [INSTANCE [CLIENT]]     one HELLO (FORGED, ESC and HUGE name the
                                                     hostile strings); prints its status (or that
                                                     the broker closed first)
"""
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))

import kbproto as kb  # noqa: E402

# Closes a line of its own in a log that does not escape peer strings (issue 11).
FORGED = "x\n2026-01-01T00:00:00Z keybrokerd: note: [default] rotated key 1 to version 99"


def raise_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(path, timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def hold(path, seconds, count, instance=None):
    """Up to `count` connections at a time for `seconds`; reports the most held at once and how
    many the broker closed."""
    raise_open_files()
    sel = selectors.DefaultSelector()
    open_now, most, opened, closed, failed = 0, 0, 0, 0, 0
    deadline = time.time() + seconds
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))  # the test ends the attack when it has measured
    while time.time() < deadline and not stopped:
        while open_now < count and time.time() < deadline and not stopped:
            try:
                s = connect(path, timeout=1)
                if instance:
                    s.sendall(kb.hello(1, instance, "hold"))
                s.setblocking(False)
            except OSError:
                failed += 1
                break
            sel.register(s, selectors.EVENT_READ)
            open_now += 1
            opened += 1
        most = max(most, open_now)
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                open_now -= 1
                closed += 1
    return {"most_open": most, "opened": opened, "closed_by_broker": closed, "connect_failed": failed}


def hello_flood(path, seconds, instance):
    names = [NAMES["HUGE"], NAMES["FORGED"], NAMES["ESC"], "ok"]
    sent, denied, closed_first = 0, 0, 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        name = names[sent % len(names)]
        try:
            s = connect(path)
            s.sendall(kb.hello(1, instance, name))
            sent += 1
            c = kb.Client.__new__(kb.Client)
            c.sock, c.next_id = s, 2
            if c.recv().status == kb.DENIED:
                denied += 1
        except (ConnectionError, OSError):
            closed_first += 1
        finally:
            s.close()
    return {"sent": sent, "denied": denied, "closed_first": closed_first}


def pipeline(path, seconds, op):
    s = connect(path)
    c = kb.Client.__new__(kb.Client)
    c.sock, c.next_id = s, 1
    assert c.hello().status == kb.OK
    s.settimeout(0.5)
    sent_bytes, rid = 0, 2
    deadline = time.time() + seconds
    key_id = 1_000_000
    if op == "mixed":
        # slow requests (new keys) first, then STATUS: their answers queue behind the unread ones
        first = b"".join(kb.latest_key(rid + i, key_id + i) for i in range(60))
        s.sendall(first)
        sent_bytes, rid, op = len(first), rid + 60, "status"
    while time.time() < deadline:
        if op == "status":
            batch = b"".join(kb.status(rid + i) for i in range(1000))
        else:
            batch = b"".join(kb.latest_key(rid + i, key_id + i) for i in range(100))
            key_id += 100
        rid += 1000
        try:
            s.sendall(batch)
            sent_bytes += len(batch)
        except socket.timeout:
            time.sleep(0.1)  # the broker stopped reading; keep trying, never read
        except OSError:
            break
    # Stays connected, still not reading, until the test is done with it.
    print(json.dumps({"sent_bytes": sent_bytes}), flush=True)
    time.sleep(3600)


def probe(path, seconds, instance="default"):
    results = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        start = time.time()
        try:
            with kb.Client(path, timeout=5) as c:
                ok = c.hello(instance).status == kb.OK and c.latest(1).status == kb.OK
            results.append(round(time.time() - start, 3) if ok else "not OK")
        except OSError as e:
            results.append(f"{type(e).__name__}")
        time.sleep(0.25)
    return {"probes": results}


NAMES = {"FORGED": FORGED, "ESC": "\x1b[2J\x1b[31mred", "HUGE": "A" * 65000}


def connect_once(path, instance="default", client="attacker"):
    try:
        with kb.Client(path, timeout=5) as c:
            r = c.hello(NAMES.get(instance, instance), NAMES.get(client, client))
            out = {"status": kb.STATUS_NAMES[r.status]}
            if r.status == kb.OK:
                out["latest"] = kb.STATUS_NAMES[c.latest(1).status]
            return out
    except (ConnectionError, OSError) as e:
        return {"status": "closed", "error": type(e).__name__}


def pass_fd(path, rendezvous):
    """Connects to the broker (nothing sent) and hands the descriptor to whoever listens at
    `rendezvous` (SCM_RIGHTS)."""
    s = connect(path)
    r = connect(rendezvous)
    socket.send_fds(r, [b"fd"], [s.fileno()])
    r.recv(1)  # until the receiver is done
    return {"passed": True}


def receive_fd(rendezvous):
    """Listens at `rendezvous`, takes one descriptor and uses it as its own broker connection."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(rendezvous)
    os.chmod(rendezvous, 0o666)
    server.listen(1)
    print(json.dumps({"listening": True}), flush=True)
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    c = kb.Client.__new__(kb.Client)
    c.sock, c.next_id = socket.socket(fileno=fds[0]), 1
    c.sock.settimeout(5)
    hello = c.hello()
    latest = c.latest(1)
    conn.sendall(b"x")
    return {"hello": kb.STATUS_NAMES[hello.status], "latest": kb.STATUS_NAMES[latest.status],
            "key": latest.key()[1].hex() if latest.status == kb.OK else None}


def connect_then_drop(path, uid, gid):
    """Run as root: connects, then becomes uid/gid for good, then uses the connection; and opens
    a second connection as the new user."""
    c = kb.Client(path, timeout=5)
    os.setgroups([])
    os.setgid(int(gid))
    os.setuid(int(uid))
    hello = c.hello()
    status = json.loads(c.status().message) if hello.status == kb.OK else None
    return {"uid": os.getuid(), "hello": kb.STATUS_NAMES[hello.status],
            "instances": sorted(status["instances"]) if status else None, "new_connection": connect_once(path)["status"]}


def main():
    command, path, *rest = sys.argv[1:]
    if command == "hold":
        out = hold(path, float(rest[0]), int(rest[1]), rest[2] if len(rest) > 2 else None)
    elif command == "hello-flood":
        out = hello_flood(path, float(rest[0]), rest[1])
    elif command == "pipeline":
        return pipeline(path, float(rest[0]), rest[1])
    elif command == "probe":
        out = probe(path, float(rest[0]), *rest[1:])
    elif command == "connect":
        out = connect_once(path, *rest)
    elif command == "pass-fd":
        out = pass_fd(path, rest[0])
    elif command == "receive-fd":
        out = receive_fd(path)
    elif command == "connect-then-drop":
        out = connect_then_drop(path, *rest)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
