"""The aws provider against moto_server with SigV4 and IAM checks on (issue 4)."""
import os
import re
import time

import kbproto
from awsmoto import (AWSAccount, Moto, Responder, aws_instance, clean_env, disabled_key_proxy, moto_fixture, seed,
                    unauthenticated)
from broker import Broker


moto = moto_fixture()


def start(workdir, name, moto, env=None, **settings):
    b = Broker(workdir / name, instances={"default": aws_instance(moto, **settings)})
    b.start(env=env or moto.account.env())
    return b


def latest(b, key_id, instance="default"):
    with kbproto.Client(b.socket) as c:
        assert c.hello(instance).status == kbproto.OK
        return c.latest(key_id)


def get(b, key_id, version, instance="default"):
    with kbproto.Client(b.socket) as c:
        assert c.hello(instance).status == kbproto.OK
        return c.get(key_id, version)


def test_create_and_retrieve_and_files_are_raw_ciphertext_blobs(workdir, moto):
    b = start(workdir, "create", moto)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.OK, r
        version, key = r.key()
        assert version == 1 and len(key) == 32
        assert latest(b, 1).key() == (1, key)
        blob = (b.instance_dir() / "aws-kms-key.1.1").read_bytes()
        # The file is the raw CiphertextBlob: boto3 decrypts it to the bytes the broker serves.
        assert moto.account.kms().decrypt(CiphertextBlob=blob)["Plaintext"] == key
        log = b.log_text()
        assert "generated encrypted datakey for key id=1, version=1" in log
        assert moto.account.secret not in log and key.hex() not in log
        # After a restart the key comes back from KMS (Decrypt), identical.
        b.restart()
        assert get(b, 1, 1).key_bytes() == key
    finally:
        b.stop()


def test_aes_128_key_spec(workdir, moto):
    b = start(workdir, "aes128", moto, key_spec="AES_128")
    try:
        version, key = latest(b, 5).key()
        assert len(key) == 16
    finally:
        b.stop()


def test_blob_from_boto3_is_served_with_boto3s_plaintext(workdir, moto):
    kms = moto.account.kms()
    blob = kms.generate_data_key_without_plaintext(KeyId="alias/keybroker", KeySpec="AES_128")["CiphertextBlob"]
    plaintext = kms.decrypt(CiphertextBlob=blob)["Plaintext"]
    b = Broker(workdir / "boto3blob", instances={"default": aws_instance(moto)})
    b.state_dir.mkdir(mode=0o700)
    b.instance_dir().mkdir(mode=0o700)
    (b.instance_dir() / "aws-kms-key.7.3").write_bytes(blob)
    b.start(env=moto.account.env())
    try:
        r = latest(b, 7)
        assert r.key() == (3, plaintext)
    finally:
        b.stop()


def test_wrong_secret_is_refused_and_reported(workdir, moto):
    env = clean_env(AWS_ACCESS_KEY_ID=moto.account.key_id, AWS_SECRET_ACCESS_KEY="not-the-secret-" + "x" * 25)
    b = start(workdir, "wrongsecret", moto, env=env)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED, r
        assert "KMS GenerateDataKeyWithoutPlaintext failed: SignatureDoesNotMatch" in r.message
        assert "KMS GenerateDataKeyWithoutPlaintext failed: SignatureDoesNotMatch" in b.log_text()
        assert "not-the-secret" not in b.log_text()
        # Not remembered: the next request asks KMS again.
        assert latest(b, 1).status == kbproto.REFUSED
    finally:
        b.stop()


def test_unknown_access_key_is_refused(workdir, moto):
    env = clean_env(AWS_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN00", AWS_SECRET_ACCESS_KEY="x" * 40)
    b = start(workdir, "unknownkey", moto, env=env)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED and "InvalidClientTokenId" in r.message, r
    finally:
        b.stop()


def test_session_token_from_sts_works(workdir, moto):
    creds = moto.account.assume_role()
    assert creds["AccessKeyId"] != moto.account.key_id
    env = clean_env(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
                    AWS_SESSION_TOKEN=creds["SessionToken"])
    b = start(workdir, "session", moto, env=env)
    try:
        r = latest(b, 2)
        assert r.status == kbproto.OK, r
        # A wrong token with the right keys is refused: the token is really checked and signed.
        b.stop()
        env["AWS_SESSION_TOKEN"] = creds["SessionToken"][:-4] + "AAAA"
        b.start(env=env)
        r = latest(b, 3)
        assert r.status == kbproto.REFUSED, r
    finally:
        b.stop()


def test_policy_without_generate_is_denied_with_the_operation_named(workdir, moto):
    with unauthenticated(moto):
        iam = moto.client("iam")
        iam.create_user(UserName="decrypt-only")
        iam.put_user_policy(UserName="decrypt-only", PolicyName="kms", PolicyDocument=
                            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Decrypt"],"Resource":"*"}]}')
        key = iam.create_access_key(UserName="decrypt-only")["AccessKey"]
    b = start(workdir, "decryptonly", moto, env=clean_env(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"]))
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED
        assert "KMS GenerateDataKeyWithoutPlaintext failed: AccessDenied" in r.message, r.message
        message, code, key = r.refusal()
        assert code.startswith("AccessDenied") and key == "alias/keybroker", r.refusal()
    finally:
        b.stop()


def test_disabled_master_key_gives_a_clear_error_while_stored_keys_are_served(workdir, moto):
    with unauthenticated(moto):
        key_id = moto.client("kms").create_key(Description="to disable")["KeyMetadata"]["KeyId"]
    proxy = disabled_key_proxy(moto, key_id)
    b = start(workdir, "disabled", moto, master_key_id=key_id, endpoint_url=proxy.url)
    try:
        version, key = latest(b, 1).key()
        with unauthenticated(moto):
            moto.client("kms").disable_key(KeyId=key_id)
        r = latest(b, 2)
        assert r.status == kbproto.REFUSED, r
        assert "KMS GenerateDataKeyWithoutPlaintext failed: DisabledException" in r.message, r.message
        assert r.refusal()[1:] == ("DisabledException", key_id)
        assert latest(b, 1).key() == (1, key)
        assert get(b, 1, 1).key_bytes() == key
        # At start-up the broker says so, and keeps serving.
        b.restart()
        deadline = time.time() + 10
        while "its state is Disabled" not in b.ctl("status", "--json").stdout and time.time() < deadline:
            time.sleep(0.1)
        assert re.search(rf"master key {key_id} .* cannot create keys: its state is Disabled", b.log_text())
        assert "its state is Disabled" in b.ctl("status", "--json").stdout
    finally:
        b.stop()
        proxy.close()
        with unauthenticated(moto):
            moto.client("kms").enable_key(KeyId=key_id)


def test_throttling_is_retried(workdir, moto):
    throttled = {"n": 0}

    def handler(method, path, headers, body):
        target = headers.get("X-Amz-Target", "")
        if target.endswith(".GenerateDataKeyWithoutPlaintext") and throttled["n"] < 2:
            throttled["n"] += 1
            return 400, {"Content-Type": "application/x-amz-json-1.1"}, '{"__type":"ThrottlingException","message":"Rate exceeded"}'
        if target.endswith(".Decrypt") and throttled["n"] < 3:
            throttled["n"] += 1
            return 503, {"Content-Type": "text/html"}, "<html>Service Unavailable</html>"
        return None

    proxy = Responder(handler, upstream=moto.url)
    b = start(workdir, "throttle", moto, endpoint_url=proxy.url, max_retries=3)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.OK, r
        assert throttled["n"] == 3
        log = b.log_text()
        assert "ThrottlingException" in log and "retry 1 of 3" in log and "retry 2 of 3" in log
        assert "HTTP 503" in log
    finally:
        b.stop()
        proxy.close()


def test_throttling_beyond_max_retries_is_unavailable(workdir, moto):
    def handler(method, path, headers, body):
        if headers.get("X-Amz-Target", "").endswith(".GenerateDataKeyWithoutPlaintext"):
            return 400, {}, '{"__type":"ThrottlingException","message":"Rate exceeded"}'
        return None

    proxy = Responder(handler, upstream=moto.url)
    b = start(workdir, "throttle2", moto, endpoint_url=proxy.url, max_retries=1)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.UNAVAILABLE
        assert r.message == "KMS GenerateDataKeyWithoutPlaintext failed: ThrottlingException (HTTP 400): Rate exceeded"
        assert sum(1 for m, p, h, _ in proxy.requests if h.get("X-Amz-Target", "").endswith("WithoutPlaintext")) == 2
    finally:
        b.stop()
        proxy.close()


def test_moto_outage(workdir):
    """Killing moto mid-run: cached keys are served, a new key id is UNAVAILABLE, and once moto is
    back (same port, same seeded account) the same request succeeds without a restart."""
    m = Moto(str(workdir)).start()
    seed(m, 99)
    account = AWSAccount(m)
    env = account.env()
    b = Broker(workdir / "outage", instances={"default": aws_instance(m, max_retries=1, request_timeout_ms=1000)})
    b.start(env=env)
    try:
        v1 = latest(b, 1).key()
        v2 = latest(b, 2).key()
        m.stop()
        assert latest(b, 1).key() == v1
        assert get(b, 2, 1).key_bytes() == v2[1]
        started = time.time()
        r = latest(b, 3)
        assert r.status == kbproto.UNAVAILABLE, r
        assert "KMS GenerateDataKeyWithoutPlaintext failed: no answer from AWS" in r.message
        assert time.time() - started < 5
        m.start()
        seed(m, 99)
        again = AWSAccount(m)
        assert again.key_id == account.key_id
        r = latest(b, 3)
        assert r.status == kbproto.OK, r
        assert latest(b, 1).key() == v1
    finally:
        b.stop()
        m.stop()
