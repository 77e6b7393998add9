"""Moving a key set between providers without re-encrypting data (issue 15): aws (moto) → kmip
(PyKMIP) → aws, rewrap within kmip, and export/import of kmip key files."""
import pytest

import kmipserver
from awsmoto import aws_instance, moto_fixture
from broker import Broker
from keyset import IDS, keys_of, make_key_set
from kmipserver import kmip_instance, parse_blob, unwrap_blob

# PyKMIP 0.11 (the server's own client, used to set up master keys) warns about APIs of Python
# and SQLAlchemy it still uses; they are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

moto = moto_fixture()


@pytest.fixture(scope="module")
def kmip():
    return kmipserver.shared()


def test_aws_to_kmip_to_aws_keeps_every_version(workdir, moto, kmip):
    a = moto.account
    uid = kmip.create_master_key()
    second_uid = kmip.create_master_key()
    b = Broker(workdir / "move", instances={
        "prod": aws_instance(moto),
        "onprem": kmip_instance(kmip, master_key_id=uid),
        "back": aws_instance(moto, master_key_id=a.second_key),
    })
    b.start(env=a.env())
    try:
        make_key_set(b, "prod")
        before = keys_of(b, "prod")

        r = b.ctl("--instance", "prod", "rewrap", "--into", "onprem")
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'copied 4 key versions of instance "prod" into instance "onprem" (provider kmip); 0 were there already' in r.stdout
        assert sorted(p.name for p in b.instance_dir("onprem").glob("kmip-key.*")) == [f"kmip-key.{i}.{v}" for i, v in IDS]
        master = kmip.master_key_bytes(uid)
        for key_id, version in IDS:
            blob = (b.instance_dir("onprem") / f"kmip-key.{key_id}.{version}").read_bytes()
            assert unwrap_blob(blob, master, key_id, version) == before[(key_id, version)]
        assert keys_of(b, "onprem") == before
        # The aws instance's files are untouched; a second run finds everything there.
        assert sorted(p.name for p in b.instance_dir("prod").glob("aws-kms-key.*")) == [f"aws-kms-key.{i}.{v}" for i, v in IDS]
        r = b.ctl("--instance", "prod", "rewrap", "--into", "onprem")
        assert r.returncode == 0 and "copied 0 key versions" in r.stdout and "4 were there already" in r.stdout, r.stdout

        # Within kmip: Decrypt under the first master key, Encrypt under the second.
        r = b.ctl("--instance", "onprem", "rewrap", "--to", second_uid)
        assert r.returncode == 0, r.stdout + r.stderr
        for key_id, version in IDS:
            blob = (b.instance_dir("onprem") / f"kmip-key.{key_id}.{version}").read_bytes()
            assert parse_blob(blob)["uid"] == second_uid

        r = b.ctl("--instance", "onprem", "rewrap", "--into", "back")
        assert r.returncode == 0, r.stdout + r.stderr
        kms = a.kms()
        second_arn = kms.describe_key(KeyId=a.second_key)["KeyMetadata"]["Arn"]
        for key_id, version in IDS:
            out = kms.decrypt(CiphertextBlob=(b.instance_dir("back") / f"aws-kms-key.{key_id}.{version}").read_bytes())
            assert out["KeyId"] == second_arn and out["Plaintext"] == before[(key_id, version)]

        b.restart()
        for instance in ("prod", "onprem", "back"):
            assert keys_of(b, instance) == before, instance
    finally:
        b.stop()


def test_kmip_key_files_export_and_import_into_another_instance(workdir, kmip, tmp_path):
    uid = kmip.create_master_key()
    b = Broker(workdir / "export", instances={
        "onprem": kmip_instance(kmip, master_key_id=uid),
        "restore": kmip_instance(kmip, master_key_id=uid),
    }).start()
    try:
        make_key_set(b, "onprem")
        before = keys_of(b, "onprem")
        backup = tmp_path / "backup"
        r = b.ctl("--instance", "onprem", "export", "--to", str(backup))
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted(p.name for p in backup.iterdir()) == [f"kmip-key.{i}.{v}" for i, v in IDS]
        r = b.ctl("--instance", "restore", "import", "--from", str(backup))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "kmip-key.2.2: imported" in r.stdout and "key 2 version 2: loaded (256 bits" in r.stdout
        assert keys_of(b, "restore") == before
    finally:
        b.stop()
