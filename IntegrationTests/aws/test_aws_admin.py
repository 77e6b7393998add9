"""keybrokerctl rewrap, import, export and unlock with the aws provider, against moto (auth on)."""
import os
import re

import kbproto
from awsmoto import aws_instance, clean_env, mfa_sts_shim, moto_fixture
from broker import Broker, me
from keyset import IDS, keys_of, make_key_set


moto = moto_fixture(31)


def test_rewrap_moves_every_key_to_the_second_master_key(workdir, moto):
    a = moto.account
    b = Broker(workdir / "rewrap", instances={"default": aws_instance(moto)})
    b.start(env=moto.account.env())
    try:
        make_key_set(b)
        before = keys_of(b)
        kms = a.kms()
        first_arn = kms.describe_key(KeyId="alias/keybroker")["KeyMetadata"]["Arn"]
        r = b.ctl("rewrap", "--to", a.second_key)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"rewrapped 4 key versions of instance \"default\" under {a.second_key}" in r.stdout
        second_arn = kms.describe_key(KeyId=a.second_key)["KeyMetadata"]["Arn"]
        for key_id, version in IDS:
            blob = (b.instance_dir() / f"aws-kms-key.{key_id}.{version}").read_bytes()
            out = kms.decrypt(CiphertextBlob=blob)
            assert out["KeyId"] == second_arn != first_arn
            assert out["Plaintext"] == before[(key_id, version)]
        assert not [p for p in os.listdir(b.instance_dir()) if not re.fullmatch(r"aws-kms-key\.\d+\.\d+|key-set", p)]
        # After a restart (nothing cached) the rewrapped files give the same keys.
        b.restart()
        assert keys_of(b) == before
    finally:
        b.stop()


def test_rewrap_to_an_unknown_key_keeps_the_old_files(workdir, moto):
    b = Broker(workdir / "rewrapbad", instances={"default": aws_instance(moto)})
    b.start(env=moto.account.env())
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            c.latest(1)
        old = (b.instance_dir() / "aws-kms-key.1.1").read_bytes()
        r = b.ctl("rewrap", "--to", "alias/does-not-exist")
        assert r.returncode == 1
        assert "key 1 version 1: FAILED: cannot re-encrypt key 1 version 1" in r.stdout
        assert "NotFoundException" in r.stdout
        assert (b.instance_dir() / "aws-kms-key.1.1").read_bytes() == old
    finally:
        b.stop()


def test_admin_op_needs_an_admin_and_unknown_commands_are_bad_requests(workdir, moto):
    b = Broker(workdir / "adminop", instances={"default": aws_instance(moto)})
    b.top["admins"] = []
    b.write_config()
    b.start(env=moto.account.env())
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.admin("rewrap alias/x")
            assert r.status == kbproto.DENIED and "may not run admin commands" in r.message
            # The connection stays usable.
            assert c.status().status == kbproto.OK
        b.stop()
        b.top["admins"] = [me()]
        b.write_config()
        b.start()
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.admin("frobnicate now")
            assert r.status == kbproto.BAD_REQUEST and "unknown admin command" in r.message
            r = c.admin("unlock 123456")
            assert r.status == kbproto.INTERNAL and "no mfa_serial" in r.message
    finally:
        b.stop()


def test_import_from_an_aws_key_management_datadir_and_export_back(workdir, moto, tmp_path):
    a = moto.account
    kms = a.kms()
    datadir = tmp_path / "datadir"
    datadir.mkdir()
    plaintexts = {}
    for key_id, version in [(1, 1), (2, 1), (2, 2), (17, 4)]:
        blob = kms.generate_data_key_without_plaintext(KeyId="alias/keybroker", KeySpec="AES_128")["CiphertextBlob"]
        (datadir / f"aws-kms-key.{key_id}.{version}").write_bytes(blob)
        plaintexts[(key_id, version)] = kms.decrypt(CiphertextBlob=blob)["Plaintext"]
    (datadir / "ibdata1").write_bytes(b"not a key")
    (datadir / "aws-kms-key.3").write_bytes(b"not a key name")

    b = Broker(workdir / "import", instances={"default": aws_instance(moto)})
    b.start(env=moto.account.env())
    try:
        # A different file already in place for 17.4 is never overwritten.
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.latest(1).status == kbproto.OK  # the broker creates its own key 1 version 1
        own = (b.instance_dir() / "aws-kms-key.1.1").read_bytes()
        r = b.ctl("import", "--from", str(datadir), "--instance", "default")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "aws-kms-key.1.1: CONFLICT" in r.stdout
        assert (b.instance_dir() / "aws-kms-key.1.1").read_bytes() == own
        for key_id, version in [(2, 1), (2, 2), (17, 4)]:
            assert f"aws-kms-key.{key_id}.{version}: imported" in r.stdout
            assert f"key {key_id} version {version}: loaded (128 bits" in r.stdout
            path = b.instance_dir() / f"aws-kms-key.{key_id}.{version}"
            assert path.read_bytes() == (datadir / path.name).read_bytes()
            assert oct(path.stat().st_mode & 0o777) == "0o400"
        # The daemon serves them with exactly boto3's plaintexts; LATEST of 2 is the imported version 2.
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.latest(2).key() == (2, plaintexts[(2, 2)])
            assert c.latest(17).key() == (4, plaintexts[(17, 4)])
            assert c.get(2, 1).key_bytes() == plaintexts[(2, 1)]
        # Running it again: identical files are reported as present, still loaded.
        (datadir / "aws-kms-key.1.1").unlink()
        r = b.ctl("import", "--from", str(datadir), "--instance", "default")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "aws-kms-key.2.1: already present (identical)" in r.stdout

        out = tmp_path / "export"
        r = b.ctl("export", "--to", str(out), "--instance", "default")
        assert r.returncode == 0, r.stdout + r.stderr
        exported = sorted(os.listdir(out))
        assert exported == sorted(p for p in os.listdir(b.instance_dir()) if p != "key-set"), "every key file, not the identity"
        for name in exported:
            assert (out / name).read_bytes() == (b.instance_dir() / name).read_bytes()
        # A blob the broker wrote decrypts with boto3 to the key the broker serves.
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert kms.decrypt(CiphertextBlob=(out / "aws-kms-key.1.1").read_bytes())["Plaintext"] == c.get(1, 1).key_bytes()
        # Exporting again changes nothing; a different file in the way is a conflict.
        (out / "aws-kms-key.2.1").chmod(0o600)
        (out / "aws-kms-key.2.1").write_bytes(b"different")
        r = b.ctl("export", "--to", str(out), "--instance", "default")
        assert r.returncode == 1 and "aws-kms-key.2.1: CONFLICT" in r.stdout
        assert (out / "aws-kms-key.2.1").read_bytes() == b"different"
    finally:
        b.stop()


def test_import_while_the_broker_is_stopped(workdir, moto, tmp_path):
    kms = moto.account.kms()
    datadir = tmp_path / "d"
    datadir.mkdir()
    blob = kms.generate_data_key_without_plaintext(KeyId="alias/keybroker", KeySpec="AES_256")["CiphertextBlob"]
    (datadir / "aws-kms-key.9.1").write_bytes(blob)
    b = Broker(workdir / "importstopped", instances={"default": aws_instance(moto)})
    r = b.ctl("import", "--from", str(datadir), "--instance", "default")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the broker is not reachable" in r.stdout
    b.start(env=moto.account.env())
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.latest(9).key() == (1, kms.decrypt(CiphertextBlob=blob)["Plaintext"])
    finally:
        b.stop()


def test_import_into_a_local_instance_is_refused(workdir, tmp_path):
    b = Broker(workdir / "importlocal")
    (tmp_path / "aws-kms-key.1.1").write_bytes(b"x")
    r = b.ctl("import", "--from", str(tmp_path), "--instance", "default")
    assert r.returncode == 1 and "uses provider local" in r.stderr


def test_two_factor_start(workdir, moto):
    a = moto.account
    serial = "arn:aws:iam::123456789012:mfa/dba"
    shim = mfa_sts_shim(moto, serial, "918273")
    # The base credentials may only call STS: every KMS call must use the two-factor session.
    env = clean_env(AWS_ACCESS_KEY_ID=a.assumer_key_id, AWS_SECRET_ACCESS_KEY=a.assumer_secret)
    b = Broker(workdir / "mfa", instances={"default": aws_instance(moto, mfa_serial=serial, sts_endpoint_url=shim.url)})
    b.state_dir.mkdir(mode=0o700)
    b.instance_dir().mkdir(mode=0o700)
    kms = a.kms()
    blob = kms.generate_data_key_without_plaintext(KeyId="alias/keybroker", KeySpec="AES_256")["CiphertextBlob"]
    (b.instance_dir() / "aws-kms-key.1.1").write_bytes(blob)
    b.start(env=env)
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
            assert r.status == kbproto.LOCKED and "locked until an admin runs: keybrokerctl unlock" in r.message, r
            r = c.info()
            assert r.status == kbproto.LOCKED and "keybrokerctl unlock --instance default" in r.message, r
        assert b.wait_for_log("waits for two-factor start"), b.log_text()
        assert "locked" in b.ctl("status", "--json").stdout
        r = b.ctl("unlock", "--token-code", "654321")
        assert r.returncode == 1 and "MultiFactorAuthentication failed" in r.stderr
        r = b.ctl("unlock", "--token-code", "918273")
        assert r.returncode == 0, r.stderr
        assert 'instance "default" unlocked until' in r.stdout
        assert shim.calls and shim.calls[-1]["SerialNumber"] == [serial]
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.latest(1).key() == (1, kms.decrypt(CiphertextBlob=blob)["Plaintext"])
            assert c.latest(2).status == kbproto.OK
            r = c.info()
            assert r.status == kbproto.OK, r
            info = r.info()
            assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", info.pop("key_set"))
            assert info == {"instance": "default", "provider": "aws", "master_key": "alias/keybroker", "location": "us-east-1"}
        log = b.log_text()
        assert "unlocked with two-factor device" in log and "918273" not in log
    finally:
        b.stop()
        shim.close()
