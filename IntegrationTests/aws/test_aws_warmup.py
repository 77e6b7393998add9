"""Parallel warm-up against moto: 200 stored keys, decrypted one by one and with prefetch."""
import threading
import time

import pytest

import kbproto
from awsmoto import Responder, aws_instance, moto_fixture
from broker import Broker

KEYS = 200


moto = moto_fixture(23)


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
    b.start(env=a.env())
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


class InFlight:
    """Counts the KMS calls the broker has open at once, each held for `delay` s (about a KMS
    round trip within a region, so that calls made in parallel overlap whatever the machine's load)."""

    def __init__(self, delay):
        self.delay, self.now, self.most, self.lock = delay, 0, 0, threading.Lock()

    def __call__(self, method, path, headers, body):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
        return None  # then forwarded to moto


def warm_up_behind_proxy(workdir, moto, blobs, concurrency):
    counter = InFlight(0.02)
    proxy = Responder(counter, upstream=moto.url)
    try:
        seconds = warm_up_seconds(workdir, moto, blobs, concurrency, endpoint=proxy.url)
    finally:
        proxy.close()
    return seconds, counter.most


def test_prefetch_concurrency_is_the_number_of_kms_calls_in_flight(workdir, moto, blobs, record_property):
    """Speed is `make bench`'s (row 4); here what makes it: one call at a time with
    prefetch_concurrency = 1, several and never more than the setting with 16."""
    one_by_one, most_1 = warm_up_behind_proxy(workdir, moto, blobs, 1)
    parallel, most_16 = warm_up_behind_proxy(workdir, moto, blobs, 16)
    record_property("warm_up_200_keys_20ms_concurrency_1_s", round(one_by_one, 2))
    record_property("warm_up_200_keys_20ms_concurrency_16_s", round(parallel, 2))
    print(f"\nwarm-up of {KEYS} keys, 20 ms per KMS call: one by one {one_by_one:.2f} s (at most {most_1} in flight), "
          f"prefetch_concurrency=16 {parallel:.2f} s (at most {most_16} in flight)")
    assert most_1 == 1
    assert 2 <= most_16 <= 16
