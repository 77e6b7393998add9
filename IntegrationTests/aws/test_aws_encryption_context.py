"""encryption_context = true (issue 16 item 7): new data keys are made and decrypted with a KMS
EncryptionContext naming the instance, key id and version (seen in the requests moto receives,
through a recording proxy), so a key file renamed to another key id does not decrypt; raw files
(older keybroker files and aws_key_management's) still decrypt. moto checks signatures and the
context."""
import base64
import json
import shutil

import pytest

import kbproto
from awsmoto import aws_instance, moto_fixture
from broker import Broker
from recording_proxy import proxy_fixture

HEADER = b"keybroker-kms-context-1 "


moto = moto_fixture(17)
proxy = proxy_fixture()


def broker(workdir, name, moto, proxy, context=True):
    a = moto.account
    b = Broker(workdir / name, instances={"default": aws_instance(moto, endpoint_url=proxy.url, encryption_context=context)})
    b.start(env=a.env())
    return b


def sent(proxy, operation):
    return [json.loads(x["request"]) for x in proxy.recorded() if x["target"] == f"TrentService.{operation}"]


def latest(b, key_id):
    with kbproto.Client(b.socket) as c:
        assert c.hello().status == kbproto.OK
        return c.latest(key_id)


def get(b, key_id, version):
    with kbproto.Client(b.socket) as c:
        assert c.hello().status == kbproto.OK
        return c.get(key_id, version)


def test_new_keys_carry_the_context_and_a_renamed_file_does_not_decrypt(workdir, moto, proxy):
    b = broker(workdir, "ctx", moto, proxy)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.OK, (r, b.log_text())
        key1 = r.key()[1]
        want = {"keybroker:instance": "default", "keybroker:key_id": "1", "keybroker:version": "1"}
        assert [g.get("EncryptionContext") for g in sent(proxy, "GenerateDataKeyWithoutPlaintext")] == [want]
        assert all(d.get("EncryptionContext") == want for d in sent(proxy, "Decrypt"))
        path = b.instance_dir() / "aws-kms-key.1.1"
        data = path.read_bytes()
        assert data.startswith(HEADER + b"instance=default key_id=1 version=1\n"), data[:80]
        # KMS itself refuses the blob without its context (this is what protects a renamed file).
        blob = data.split(b"\n", 1)[1]
        kms = moto.account.kms()
        with pytest.raises(Exception) as refused:
            kms.decrypt(CiphertextBlob=blob)
        assert "InvalidCiphertext" in str(refused.value)
        assert base64.b64decode(base64.b64encode(kms.decrypt(CiphertextBlob=blob, EncryptionContext=want)["Plaintext"])) == key1

        # Rotation: version 2 names its own version.
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.rotate(1).status == kbproto.OK
        assert (b.instance_dir() / "aws-kms-key.1.2").read_bytes().startswith(HEADER + b"instance=default key_id=1 version=2\n")

        # The file copied under another key id: one clear line, the rest is served.
        shutil.copy(path, b.instance_dir() / "aws-kms-key.5.1")
        b.restart()
        r = get(b, 5, 1)
        assert r.status != kbproto.OK
        line = next(l for l in b.log_text().splitlines() if "aws-kms-key.5.1" in l and "renamed or copied" in l)
        assert 'was wrapped for instance "default" key 1 version 1 (encryption context), not for instance "default" key 5 version 1' in line
        assert "AWS request id" in line
        assert get(b, 1, 1).key_bytes() == key1, "the original still decrypts"
    finally:
        b.stop()


def test_raw_files_and_aws_key_management_files_still_decrypt(workdir, moto, proxy):
    b = broker(workdir, "ctx-old", moto, proxy, context=False)
    try:
        raw = latest(b, 3)
        assert raw.status == kbproto.OK
        assert not (b.instance_dir() / "aws-kms-key.3.1").read_bytes().startswith(HEADER)
        assert all("EncryptionContext" not in g for g in sent(proxy, "GenerateDataKeyWithoutPlaintext"))
    finally:
        b.stop()
    # What aws_key_management writes: GenerateDataKeyWithoutPlaintext, no context, the raw blob.
    kms = moto.account.kms()
    blob = kms.generate_data_key_without_plaintext(KeyId="alias/keybroker", KeySpec="AES_128")["CiphertextBlob"]
    (b.instance_dir() / "aws-kms-key.7.1").write_bytes(blob)
    b.instances["default"]["encryption_context"] = True
    b.write_config()
    b.start()
    try:
        assert get(b, 3, 1).key_bytes() == raw.key()[1], "a file made without a context decrypts with encryption_context on"
        old = get(b, 7, 1)
        assert old.status == kbproto.OK and len(old.key_bytes()) == 16
        assert latest(b, 8).status == kbproto.OK
        assert (b.instance_dir() / "aws-kms-key.8.1").read_bytes().startswith(HEADER), "new keys get the context"
    finally:
        b.stop()


def test_rewrap_keeps_the_context(workdir, moto, proxy):
    b = broker(workdir, "ctx-rewrap", moto, proxy)
    try:
        key = latest(b, 1).key()[1]
        r = b.ctl("rewrap", "--to", moto.account.second_key)
        assert r.returncode == 0, r.stdout + r.stderr
        data = (b.instance_dir() / "aws-kms-key.1.1").read_bytes()
        assert data.startswith(HEADER + b"instance=default key_id=1 version=1\n")
        want = {"keybroker:instance": "default", "keybroker:key_id": "1", "keybroker:version": "1"}
        re = sent(proxy, "ReEncrypt")
        assert re and re[0]["SourceEncryptionContext"] == want and re[0]["DestinationEncryptionContext"] == want
        b.restart()
        assert get(b, 1, 1).key_bytes() == key
    finally:
        b.stop()


def test_a_damaged_header_is_one_line(workdir, moto, proxy):
    b = broker(workdir, "ctx-bad", moto, proxy)
    try:
        d = b.instance_dir()
        d.mkdir(parents=True, exist_ok=True)
        (d / "aws-kms-key.4.1").write_bytes(HEADER + b"instance=default key_id=four\n" + b"\x01" * 40)
        b.restart()
        assert get(b, 4, 1).status != kbproto.OK
        assert "aws-kms-key.4.1 cannot be read: its keybroker header lacks instance, key_id or version" in b.log_text()
        assert latest(b, 1).status == kbproto.OK
    finally:
        b.stop()
