"""The S3 key store (issue 13): brokers on one bucket in moto_server (S3 and KMS, signatures
checked), each with its own state dir. Brokers that share a key set share its master key: the
local provider's key file here, KMS for the aws provider."""
import concurrent.futures
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

import kbproto
from broker import KEYBROKERD, Broker, write_master_key
from s3store import BUCKET, Outage, s3_moto_fixture, store_broker, store_instance


moto = s3_moto_fixture()


@pytest.fixture(scope="module")
def master_key(workdir):
    return write_master_key(workdir / "shared-master.key")


@pytest.fixture(scope="module")
def pair(workdir, moto, master_key):
    """Two brokers on s3://keybroker-shared/pair, refreshing every 300 ms."""
    brokers = [store_broker(workdir, f"pair{i}", moto, master_key, prefix="pair", refresh_ms=300) for i in (1, 2)]
    for b in brokers:
        b.start(env=moto.account.env())
    yield brokers
    for b in brokers:
        b.stop()


def call(b, fn, *args):
    with kbproto.Client(b.socket, timeout=30) as c:
        assert c.hello().status == kbproto.OK
        return getattr(c, fn)(*args)


def latest(b, key_id):
    return call(b, "latest", key_id)


def get(b, key_id, version):
    return call(b, "get", key_id, version)


def objects(moto, prefix):
    return moto.account.objects(prefix + "/default/")


def cached(b):
    d = b.instance_dir()
    return {p.name: p.read_bytes() for p in d.iterdir() if not p.name.startswith(".")} if d.exists() else {}


def key_files(files):
    return {name: data for name, data in files.items() if name.split("/")[-1] != "key-set"}


def test_keys_created_on_one_broker_are_served_byte_identically_by_the_other(pair, moto):
    a, b = pair
    keys = {}
    for key_id in range(1, 21):
        r = latest(a, key_id)
        assert r.status == kbproto.OK, r
        keys[key_id] = r.key()
    for key_id, (version, key) in keys.items():
        assert version == 1
        assert latest(b, key_id).key() == (1, key)
        assert get(b, key_id, 1).key_bytes() == key
    bucket = objects(moto, "pair")
    for key_id in keys:
        name = f"local-key.{key_id}.1"
        # Object name = key file name, content = the key file's bytes, on both hosts.
        assert bucket[f"pair/default/{name}"] == cached(a)[name] == cached(b)[name]
    # One key set: its identity is an object beside the keys, cached by both brokers.
    assert bucket["pair/default/key-set"] == cached(a)["key-set"] == cached(b)["key-set"]


def test_200_concurrent_creations_of_the_same_new_ids_from_both_brokers_end_with_one_version_each(pair, moto):
    a, b = pair
    ids = list(range(1000, 1200))
    jobs = [(broker, key_id) for broker in (a, b) for key_id in ids]
    random.Random(13).shuffle(jobs)

    def ask(job):
        broker, key_id = job
        r = latest(broker, key_id)
        assert r.status == kbproto.OK, (key_id, r, r.message if r.status else "")
        return broker is a, key_id, r.key()

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, jobs))
    seen = {}
    for _, key_id, (version, key) in answers:
        assert version == 1
        assert seen.setdefault(key_id, key) == key, f"key {key_id}: the brokers serve different keys"
    bucket = objects(moto, "pair")
    for key_id in ids:
        assert [k for k in bucket if k.startswith(f"pair/default/local-key.{key_id}.")] == [f"pair/default/local-key.{key_id}.1"]
        assert cached(a)[f"local-key.{key_id}.1"] == cached(b)[f"local-key.{key_id}.1"] == bucket[f"pair/default/local-key.{key_id}.1"]
    races = a.log_text().count("was created elsewhere at the same time") + b.log_text().count("was created elsewhere at the same time")
    print(f"creations raced: {len(jobs)} requests for {len(ids)} new ids; {races} lost a create race and adopted the winner")
    assert races > 0, "no create race happened: the test did not test the race"


def test_a_rotation_on_one_broker_is_seen_by_the_other(pair):
    a, b = pair
    for key_id in (50, 51):
        assert latest(a, key_id).status == kbproto.OK
        assert latest(b, key_id).key()[0] == 1
    # GET_KEY for a version not known yet looks in the store at once.
    r = call(a, "rotate", 50)
    assert r.status == kbproto.OK and r.rotated() == [(50, 2)], r
    key = latest(a, 50).key()
    assert get(b, 50, 2).key_bytes() == key[1]
    # LATEST_KEY moves on through the refresh (store_refresh_ms = 300).
    assert call(a, "rotate", 51).rotated() == [(51, 2)]
    new = latest(a, 51).key()
    deadline = time.time() + 30
    while latest(b, 51).key()[0] != 2:
        assert time.time() < deadline, "the other broker never saw the new version"
        time.sleep(0.05)
    assert latest(b, 51).key() == new
    assert "new version(s) from s3://keybroker-shared/pair/default/" in b.log_text()


def test_concurrent_rotations_on_both_brokers_give_every_version_the_same_bytes(pair, moto):
    a, b = pair
    assert latest(a, 60).status == kbproto.OK
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda broker: call(broker, "rotate", 60), [a, b] * 4))
    assert all(r.status == kbproto.OK for r in results), [r.message for r in results if r.status]
    versions = sorted(v for r in results for _, v in r.rotated())
    bucket = objects(moto, "pair")
    stored = sorted(int(k.rsplit(".", 1)[1]) for k in bucket if k.startswith("pair/default/local-key.60."))
    assert stored == list(range(1, stored[-1] + 1)) and set(versions) <= set(stored)
    for v in stored:
        assert get(a, 60, v).key_bytes() == get(b, 60, v).key_bytes()


def test_state_dir_deleted_while_the_broker_is_down_gives_identical_keys_after_restart(pair):
    a, b = pair
    known = {key_id: latest(b, key_id).key() for key_id in range(1, 21)}
    b.stop()
    shutil.rmtree(b.instance_dir())
    b.start()
    for key_id, (version, key) in known.items():
        assert latest(b, key_id).key() == (version, key)
    # The cache is filled again (warm-up), byte for byte what the other broker has.
    assert all(cached(b)[f"local-key.{key_id}.1"] == cached(a)[f"local-key.{key_id}.1"] for key_id in known)


@pytest.fixture(scope="module")
def outage(workdir, moto, master_key):
    """A broker whose S3 endpoint goes through a relay the test can cut."""
    relay = Outage(moto.port)
    b = Broker(workdir / "outage", master_key=master_key)
    b.instances = {"default": store_instance(moto, master_key=master_key, prefix="outage", store_endpoint_url=relay.url,
                                             max_retries=None)}
    b.write_config()
    b.start(env=moto.account.env())
    yield b, relay
    relay.up()
    b.stop()


def test_s3_unreachable_cached_keys_served_creation_unavailable_nothing_written_locally(outage, moto):
    b, relay = outage
    known = {key_id: latest(b, key_id).key() for key_id in range(1, 6)}
    relay.down()
    try:
        for key_id, key in known.items():
            assert latest(b, key_id).key() == key
            assert get(b, key_id, 1).key_bytes() == key[1]
        r = latest(b, 99)
        assert r.status == kbproto.UNAVAILABLE, r
        assert "S3 store s3://keybroker-shared/outage/default/" in r.message and "cached keys are still served" in r.message, r.message
        r = call(b, "rotate", 1)
        assert r.status == kbproto.UNAVAILABLE and "S3 store" in r.message, r
        # A restart while S3 is down still serves every cached key.
        b.restart()
        for key_id, key in known.items():
            assert latest(b, key_id).key() == key
        assert "serving the 5 versions in the cache" in b.log_text()
        # Nothing was written locally that the store does not have.
        relay.up()
        bucket = objects(moto, "outage")
        assert {f"outage/default/{name}" for name in cached(b)} <= set(bucket)
        assert len(key_files(bucket)) == 5
        # S3 back: creation works without a restart.
        r = latest(b, 99)
        assert r.status == kbproto.OK, r
        assert "outage/default/local-key.99.1" in objects(moto, "outage")
        assert call(b, "rotate", 1).rotated() == [(1, 2)]
    finally:
        relay.up()


def test_sigkill_during_creation_every_version_told_to_a_client_is_in_the_bucket(workdir, moto, master_key, pair):
    """Seeded: 60 rounds of creations and rotations against a broker killed with SIGKILL at a
    random moment; every version any client was told must be in the bucket, and serve the same
    key from another broker."""
    rng = random.Random(1313)
    b = store_broker(workdir, "killed", moto, master_key, prefix="kill", refresh_ms=60_000)
    told = {}
    lock = threading.Lock()
    kills = 0
    next_id = 1
    try:
        for _ in range(60):
            b.start(env=moto.account.env())
            stop = threading.Event()
            answered = threading.Event()

            def worker(ids):
                for key_id in ids:
                    if stop.is_set():
                        return
                    try:
                        with kbproto.Client(b.socket, timeout=5) as c:
                            if c.hello().status != kbproto.OK:
                                return
                            r = c.latest(key_id) if rng_choice(key_id) else c.rotate(key_id)
                            if r.status != kbproto.OK:
                                continue
                            answered.set()
                            if r.op == kbproto.OP_LATEST_KEY:
                                version, key = r.key()
                                with lock:
                                    told[(key_id, version)] = key
                            else:
                                for kid, version in r.rotated():
                                    with lock:
                                        told.setdefault((kid, version), None)
                    except Exception:  # the broker died mid-answer: that is the test
                        return

            def rng_choice(key_id):
                return key_id % 3 != 0

            ids = list(range(next_id, next_id + 40))
            next_id += 40
            threads = [threading.Thread(target=worker, args=(ids[i::4],)) for i in range(4)]
            for t in threads:
                t.start()
            # Timed from the round's first answer: under load a delay from the start could end
            # before any creation began, and the round would test nothing.
            answered.wait(30)
            time.sleep(rng.uniform(0.0, 0.5))
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait()
            kills += 1
            stop.set()
            for t in threads:
                t.join()
            b.stop()
    finally:
        b.stop()
    bucket = objects(moto, "kill")
    reader = store_broker(workdir, "kill-reader", moto, master_key, prefix="kill")
    reader.start(env=moto.account.env())
    try:
        for (key_id, version), key in told.items():
            name = f"kill/default/local-key.{key_id}.{version}"
            assert name in bucket, f"key {key_id} version {version} was told to a client but is not in the bucket"
            served = get(reader, key_id, version)
            assert served.status == kbproto.OK, served
            if key is not None:
                assert served.key_bytes() == key, f"key {key_id} version {version} changed"
    finally:
        reader.stop()
    print(f"SIGKILL test: {kills} kills, {len(told)} versions told to clients, {len(bucket)} objects in the bucket")
    assert kills >= 50 and len(told) > 100


@pytest.mark.parametrize("settings,message", [
    ({"store": "https://bucket/x"}, "instances.default.store: must be an s3://BUCKET/PREFIX URL"),
    ({"store": "s3://Bad_Bucket/x"}, "is not an S3 bucket name"),
    ({"store": "s3://bucket/a/../b"}, "the prefix \"a/../b\" may use"),
    ({"store": None, "store_endpoint_url": None, "store_refresh_ms": 1000, "region": None}, "store_refresh_ms: applies only with store"),
    ({"store_refresh_ms": 10}, "store_refresh_ms"),
    ({"store_endpoint_url": "ftp://x"}, "store_endpoint_url: \"ftp://x\" is not an http:// or https:// URL"),
    ({"region": "US East"}, "region: \"US East\" is not a region name"),
])
def test_bad_store_settings_are_one_line_and_exit_78(workdir, moto, master_key, settings, message):
    b = Broker(workdir / f"bad-{abs(hash(str(settings)))}", master_key=master_key)
    b.instances = {"default": store_instance(moto, master_key=master_key, **settings)}
    b.write_config()
    out = subprocess.run([str(KEYBROKERD), "--config", str(b.config_path), "--check"], capture_output=True, text=True, timeout=60,
                         env=moto.account.env())
    assert out.returncode == 78, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_the_aws_provider_on_a_shared_store(workdir, moto, master_key):
    """KMS-wrapped keys: the objects are raw CiphertextBlobs (aws_key_management's files)."""
    brokers = [store_broker(workdir, f"aws{i}", moto, master_key, provider="aws", prefix="aws") for i in (1, 2)]
    for b in brokers:
        b.start(env=moto.account.env())
    try:
        version, key = latest(brokers[0], 7).key()
        assert latest(brokers[1], 7).key() == (version, key)
        blob = objects(moto, "aws")["aws/default/aws-kms-key.7.1"]
        kms = moto.client("kms", moto.account.key_id, moto.account.secret)
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == key
    finally:
        for b in brokers:
            b.stop()


def test_store_push_uploads_a_local_key_set_into_a_new_shared_store_and_verify_agrees(workdir, moto, master_key):
    b = Broker(workdir / "migrate", master_key=master_key)
    b.start()
    keys = {key_id: latest(b, key_id).key() for key_id in range(1, 6)}
    identity = (b.instance_dir() / "key-set").read_bytes()
    assert call(b, "rotate", 1).rotated() == [(1, 2)]
    keys[(1, 2)] = latest(b, 1).key()
    b.stop()
    b.instances = {"default": store_instance(moto, master_key=master_key, prefix="migrate")}
    b.write_config()
    b.start(env=moto.account.env())
    try:
        assert "6 versions in " in b.log_text() and "keybrokerctl store push" in b.log_text()
        status = b.ctl("store", "status")
        assert status.returncode == 0, status.stderr
        assert "objects: 0" in status.stdout and "6 versions only on this host" in status.stdout, status.stdout
        verify = b.ctl("store", "verify")
        assert verify.returncode == 1 and "6 versions are only here" in verify.stderr, verify.stdout + verify.stderr
        push = b.ctl("store", "push")
        assert push.returncode == 0, push.stderr
        assert "uploaded 6 key versions" in push.stdout, push.stdout
        again = b.ctl("store", "push")
        assert again.returncode == 0 and "uploaded 0 key versions" in again.stdout and "6 were in the store already" in again.stdout, again.stdout
        verify = b.ctl("store", "verify")
        assert verify.returncode == 0 and "verified 6 of 6 objects" in verify.stdout, verify.stdout + verify.stderr
        bucket = objects(moto, "migrate")
        assert {k.split("/")[-1]: v for k, v in bucket.items()} == cached(b)
        # The new store took the key set's identity from the host, so datadirs that recorded it still start.
        assert bucket["migrate/default/key-set"] == identity
        status = json.loads(b.ctl("store", "status", "--json").stdout)
        assert status["local_only"] == 0 and status["objects"] == 6 and status["last_sync"], status
        # Another host on the same store now serves the old key set, byte for byte.
        other = store_broker(workdir, "migrate-other", moto, master_key, prefix="migrate")
        other.start(env=moto.account.env())
        try:
            for key_id in range(2, 6):
                assert latest(other, key_id).key() == keys[key_id]
            assert latest(other, 1).key() == keys[(1, 2)]
        finally:
            other.stop()
    finally:
        b.stop()


def test_store_commands_on_an_instance_without_a_store_say_so(broker):
    r = broker.ctl("store", "status")
    assert r.returncode == 1 and "set store = \"s3://BUCKET/PREFIX\"" in r.stderr, r.stderr
