"""moto_server serving S3 and KMS with signature checking on, patched for moto 5.2's two S3
faults (moto_patched.py), and brokers sharing one bucket (issue 13).

The IAM user the brokers run as may use KMS and exactly what docs/multi-host.md's policy grants on
the bucket: GetObject, PutObject, ListBucket — no DeleteObject, so a broker that tried to delete
would fail the tests.
"""
import os
import sys
from pathlib import Path

from awsmoto import (KMS_POLICY, REGION, Moto, clean_env, create_master_key, create_user, free_port, moto_fixture,
                    unauthenticated)
from broker import Broker, me
from relay import TCPRelay, cut, listener

PATCHED = Path(__file__).resolve().parent / "moto_patched.py"
BUCKET = "keybroker-shared"


def store_policy(bucket):
    return {"Version": "2012-10-17", "Statement": [
        KMS_POLICY["Statement"][0],
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"},
    ]}


class MotoS3(Moto):
    """moto_server with the fixture's patches. moto keeps the bucket in memory, so outage tests cut
    the network in front of it (`Outage`) instead of stopping it."""

    def command(self):
        return [sys.executable, str(PATCHED)]


class StoreAccount:
    """A user with KMS and the bucket's policy, a master key, the bucket."""

    def __init__(self, moto, bucket=BUCKET):
        self.moto = moto
        self.bucket = bucket
        with unauthenticated(moto):
            self.key_id, self.secret = create_user(moto.client("iam"), "keybroker", "store", store_policy(bucket))
            self.master_key = create_master_key(moto.client("kms"))
            moto.client("s3").create_bucket(Bucket=bucket)

    def s3(self):
        return self.moto.client("s3", self.key_id, self.secret)

    def env(self, **extra):
        return clean_env(AWS_ACCESS_KEY_ID=self.key_id, AWS_SECRET_ACCESS_KEY=self.secret, **extra)

    def objects(self, prefix):
        """{object key: bytes} under `prefix`, read as the broker's user."""
        s3 = self.s3()
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
        return out


def s3_moto_fixture():
    """The module's moto_server for the store tests (MotoS3, not seeded, a StoreAccount), started
    once for the module: `moto = s3_moto_fixture()` at a module's top level."""
    return moto_fixture(None, server=MotoS3, account=StoreAccount)


def store_instance(moto, provider="local", master_key=None, prefix="kb", refresh_ms=500, bucket=BUCKET, **settings):
    """An instance table with store = s3://bucket/prefix on moto."""
    base = {"provider": provider, "clients": [me()], "store": f"s3://{bucket}/{prefix}", "store_endpoint_url": moto.url,
            "store_refresh_ms": refresh_ms, "region": REGION}
    if provider == "local":
        base["master_key_file"] = str(master_key)
    elif provider == "aws":
        base.update({"master_key_id": "alias/keybroker", "endpoint_url": moto.url, "sts_endpoint_url": moto.url,
                     "request_timeout_ms": 2000, "max_retries": 2})
    base.update(settings)
    return {k: v for k, v in base.items() if v is not None}


def store_broker(workdir, name, moto, master_key, provider="local", **settings):
    """A broker (not started) on the shared bucket, with its own state dir; brokers that share a
    key set share the master key file (local provider) or the KMS key (aws)."""
    b = Broker(Path(workdir) / name, master_key=master_key)
    b.instances = {"default": store_instance(moto, provider=provider, master_key=master_key, **settings)}
    b.write_config()
    return b


class Outage(TCPRelay):
    """A TCP relay in front of moto that the test can take down: while down, connections are
    refused (the listening socket is closed) and open ones are cut, as when S3 is unreachable.
    moto itself keeps running, so the bucket's contents survive the outage."""

    def __init__(self, upstream_port):
        super().__init__(upstream_port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener = None
        self.up()

    def up(self):
        with self.lock:
            if self.listener:
                return
            self.listener = listener(port=self.port)
            self.serve(self.listener)

    def down(self):
        with self.lock:
            s, self.listener = self.listener, None
            connections, self.connections = self.connections, []
        if s:
            cut([s])
        cut(connections)

    def accepting(self, listening):
        return self.listener is listening
