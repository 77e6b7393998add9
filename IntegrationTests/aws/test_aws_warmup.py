"""Parallel warm-up against moto: 200 stored keys, decrypted one by one and with prefetch."""
import shutil
import time

import pytest

import kbproto
from awsmoto import AWSAccount, Moto, Responder, aws_instance, clean_env, seed
from broker import Broker

KEYS = 200


@pytest.fixture(scope="module")
def moto(workdir):
    m = Moto(str(workdir)).start()
    seed(m, 23)
    m.account = AWSAccount(m)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def blobs(moto):
    kms = moto.account.kms()
    return {i: kms.generate_data_key_without_plaintext(KeyId="alias/keybroker", KeySpec="AES_256")["CiphertextBlob"]
            for i in range(1, KEYS + 1)}


def warm_up_seconds(workdir, moto, blobs, concurrency, endpoint=None):
    name = f"warm{concurrency}{'-latency' if endpoint else ''}"
    b = Broker(workdir / name, instances={"default": aws_instance(moto, prefetch_concurrency=concurrency,
                                                                  endpoint_url=endpoint or moto.url)})
    b.state_dir.mkdir(mode=0o700)
    b.instance_dir().mkdir(mode=0o700)
    for i, blob in blobs.items():
        (b.instance_dir() / f"aws-kms-key.{i}.1").write_bytes(blob)
    a = moto.account
    started = time.monotonic()
    b.start(env=clean_env(AWS_ACCESS_KEY_ID=a.key_id, AWS_SECRET_ACCESS_KEY=a.secret))
    try:
        while "loaded 200 of 200 stored key versions" not in b.log_text():
            assert time.monotonic() - started < 120, b.log_text()[-2000:]
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.get(KEYS, 1).status == kbproto.OK
        return elapsed
    finally:
        b.stop()


def test_prefetch_is_faster_than_one_by_one(workdir, moto, blobs, record_property):
    one_by_one = warm_up_seconds(workdir, moto, blobs, 1)
    parallel = warm_up_seconds(workdir, moto, blobs, 16)
    record_property("warm_up_200_keys_concurrency_1_s", round(one_by_one, 2))
    record_property("warm_up_200_keys_concurrency_16_s", round(parallel, 2))
    print(f"\nwarm-up of {KEYS} keys against moto: one by one {one_by_one:.2f} s, prefetch_concurrency=16 {parallel:.2f} s")
    assert parallel < one_by_one * 1.5  # moto on loopback answers in ~3 ms: little to gain


def test_prefetch_with_a_realistic_round_trip(workdir, moto, blobs, record_property):
    """The same behind a proxy that adds 20 ms per call, about a KMS round trip within a region."""
    def slow(method, path, headers, body):
        time.sleep(0.02)
        return None
    proxy = Responder(slow, upstream=moto.url)
    try:
        one_by_one = warm_up_seconds(workdir, moto, blobs, 1, endpoint=proxy.url)
        parallel = warm_up_seconds(workdir, moto, blobs, 16, endpoint=proxy.url)
    finally:
        proxy.close()
    record_property("warm_up_200_keys_20ms_concurrency_1_s", round(one_by_one, 2))
    record_property("warm_up_200_keys_20ms_concurrency_16_s", round(parallel, 2))
    print(f"\nwarm-up of {KEYS} keys, 20 ms per KMS call: one by one {one_by_one:.2f} s, prefetch_concurrency=16 {parallel:.2f} s")
    assert parallel * 3 < one_by_one
