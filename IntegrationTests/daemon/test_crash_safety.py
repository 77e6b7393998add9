"""Crash safety: SIGKILL at random moments while keys are created and rotated (issue 6, item 1).

Seeded and reproducible: KEYBROKER_KILL_SEED picks the moments, KEYBROKER_KILLS how many
(`make test` runs 200, `make soak` many more). After every kill the broker restarts and must
serve every version a client was told about with the same bytes, take no temporary or partial
file for a key, and report exactly the versions that are on disk."""
import json
import os
import random
import subprocess
import threading
import time

import kbproto as kb
from broker import KEYBROKERD, Broker

SEED = int(os.environ.get("KEYBROKER_KILL_SEED", "20261129"))
KILLS = int(os.environ.get("KEYBROKER_KILLS", "200"))


def start(b):
    b.log = open(b.log_path, "ab")
    b.proc = subprocess.Popen([str(KEYBROKERD), "--config", str(b.config_path)], stdout=b.log, stderr=subprocess.STDOUT)
    b.wait_ready()


def load_until_killed(b, rng, told, next_id):
    """Creates and rotates keys, pipelined, recording what the broker answered, until it dies.

    The kill is timed from the round's first answer, not from HELLO: on a loaded machine a delay
    counted from HELLO can end before the broker has done any work, and such a kill proves nothing."""
    c = kb.Client(b.socket, timeout=5)
    c.hello()
    killer = threading.Timer(rng.uniform(0.0, 0.04), b.proc.kill)
    rid = 10
    try:
        while True:
            batch = {}
            for _ in range(8):
                rid += 1
                if told and rng.random() < 0.5:
                    key = rng.choice(list(told))[0]
                    batch[rid] = ("rotate", key)
                    c.send(kb.rotate(rid, key))
                else:
                    batch[rid] = ("latest", next_id[0])
                    c.send(kb.latest_key(rid, next_id[0]))
                    next_id[0] += 1
            for _ in range(len(batch)):
                r = c.recv()
                if killer.ident is None:
                    killer.start()
                kind, key = batch.pop(r.request_id)
                assert r.status == kb.OK, r
                if kind == "latest":
                    version, key_bytes = r.key()
                    told[(key, version)] = key_bytes
                else:
                    [(rotated, version)] = r.rotated()
                    told[(key, version)] = None  # the client learnt the version exists; bytes checked below
    except (ConnectionError, OSError):
        pass
    finally:
        killer.cancel()
        c.close()
        if b.proc.poll() is None:
            b.proc.kill()
        b.proc.wait()
        b.log.close()


def verify(b, told):
    with kb.Client(b.socket, timeout=30) as c:
        assert c.hello().status == kb.OK
        items = list(told.items())
        for start_at in range(0, len(items), 50):  # within max_in_flight_per_connection (64)
            chunk = items[start_at:start_at + 50]
            c.send(b"".join(kb.get_key(i, k, v) for i, ((k, v), _) in enumerate(chunk)))
            answers = {}
            for _ in chunk:
                r = c.recv()
                answers[r.request_id] = r
            for i, ((k, v), key_bytes) in enumerate(chunk):
                r = answers[i]
                assert r.status == kb.OK, f"key {k} version {v} was answered before the kill but is now {r}"
                if key_bytes is None:
                    told[(k, v)] = r.key_bytes()
                else:
                    assert r.key_bytes() == key_bytes, f"key {k} version {v} changed bytes"
        files = sorted(f for f in os.listdir(b.instance_dir()) if f != "key-set")  # the key set's identity
        assert not [f for f in files if not f.startswith("local-key.")], f"leftover files after restart: {files}"
        doc = json.loads(c.status().message)["instances"]["default"]
        assert doc["versions"] == len(files), "index differs from the files"
        assert doc["failed"] == 0, doc["last_error"]
        # every file on disk, told or not, is a complete key
        rid = 100000
        for f in files:
            _, k, v = f.split(".")
            rid += 1
            c.send(kb.get_key(rid, int(k), int(v)))
            r = c.recv()
            assert r.status == kb.OK, f"{f} on disk but not loadable: {r}"


def test_sigkill_at_random_moments_loses_nothing(workdir):
    rng = random.Random(SEED)
    b = Broker(workdir / "crash")
    told, next_id = {}, [1]
    started = time.time()
    for _ in range(KILLS):
        start(b)
        load_until_killed(b, rng, told, next_id)
    start(b)
    try:
        verify(b, told)
    finally:
        b.stop()
    print(f"\ncrash safety: {KILLS} SIGKILLs (seed {SEED}), {len(told)} versions told to the client, "
          f"{len(os.listdir(b.instance_dir()))} on disk, {time.time() - started:.1f} s")
    assert len(told) > KILLS, "the kills landed before any work was done"
