"""The kmip provider against a real KMIP server: PyKMIP 0.11's server over mutual TLS (issue 15)."""
import time

import pytest

import kbproto
import kmipserver
from broker import Broker
from kmipserver import Relay, kmip_instance, parse_blob, unwrap_blob

# PyKMIP 0.11 (the server's own client, used to set up master keys) warns about APIs of Python
# and SQLAlchemy it still uses; they are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def kmip():
    return kmipserver.shared()


def client(b, instance="default"):
    c = kbproto.Client(b.socket)
    assert c.hello(instance).status == kbproto.OK
    return c


def latest(b, key_id, instance="default"):
    with client(b, instance) as c:
        return c.latest(key_id)


def get(b, key_id, version, instance="default"):
    with client(b, instance) as c:
        return c.get(key_id, version)


def start(workdir, name, kmip, **settings):
    b = Broker(workdir / name, instances={"default": kmip_instance(kmip, **settings)})
    return b.start()


def test_creates_serves_rotates_restarts_and_the_key_manager_unwraps_the_same_bytes(workdir, kmip):
    uid = kmip.create_master_key()
    b = start(workdir, "uid", kmip, master_key_id=uid)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.OK, r
        v1, key1 = r.key()
        assert v1 == 1 and len(key1) == 32
        with client(b) as c:
            rotated = c.rotate(1)
            assert rotated.status == kbproto.OK, rotated
            v2, key2 = c.latest(1).key()
        assert v2 == 2 and key2 != key1
        files = sorted(p.name for p in b.instance_dir().iterdir())
        assert files == ["key-set", "kmip-key.1.1", "kmip-key.1.2"]
        blob = (b.instance_dir() / "kmip-key.1.1").read_bytes()
        fields = parse_blob(blob)
        # KMIP 1.4 was agreed, so the key is wrapped with AES-GCM, its id and version as additional data.
        assert fields["mode"] == 1 and fields["kmip"] == (1, 4) and fields["uid"] == uid and len(fields["tag"]) == 16
        assert key1 not in blob
        # The key manager's own key unwraps the file to the served bytes (the format of docs/kmip.md).
        assert unwrap_blob(blob, kmip.master_key_bytes(uid), 1, 1) == key1
        log = b.log_text()
        assert "KMIP protocol 1.4 agreed" in log and f"is object {uid}: state Active, AES-256" in log
        assert key1.hex() not in log
        b.restart()
        assert get(b, 1, 1).key_bytes() == key1
        assert latest(b, 1).key() == (2, key2)
        # Copied to another key id, the GCM blob fails on the server (its additional data is the id)
        # and is never served. PyKMIP answers a tag mismatch with General Failure, which looks
        # transient, so it is UNAVAILABLE (and retried later) rather than reported as damaged.
        (b.instance_dir() / "kmip-key.9.1").write_bytes(blob)
        r = latest(b, 9)
        assert r.status == kbproto.UNAVAILABLE, r
        assert f"kmip-key.9.1): KMIP server {kmip.address}: Decrypt failed: General Failure" in r.message
    finally:
        b.stop()


def test_master_key_by_name(workdir, kmip):
    uid = kmip.create_master_key(name="mariadb-encryption")
    b = start(workdir, "name", kmip, master_key_id="name:mariadb-encryption")
    try:
        r = latest(b, 7)
        assert r.status == kbproto.OK, r
        # Connections are kept: ten more keys (twenty KMIP requests, one after another) open none.
        sessions = kmip.log_path.read_text().count("Starting session")
        assert sessions >= 1
        with client(b) as c:
            for key_id in range(8, 18):
                assert c.latest(key_id).status == kbproto.OK
        assert kmip.log_path.read_text().count("Starting session") == sessions
        assert parse_blob((b.instance_dir() / "kmip-key.7.1").read_bytes())["uid"] == uid
        assert f"KMIP master key name:mariadb-encryption is object {uid}" in b.log_text()
    finally:
        b.stop()


def wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_server_down_then_back_serves_cached_keys_and_recovers_without_restart(workdir, kmip):
    uid = kmip.create_master_key()
    b = start(workdir, "down", kmip, master_key_id=uid)
    try:
        key = latest(b, 1).key()
        kmip.stop()
        try:
            assert latest(b, 1).key() == key  # cached: no KMIP call
            r = latest(b, 2)
            assert r.status == kbproto.UNAVAILABLE, r
            assert f"KMIP server {kmip.address} is not reachable: cannot connect: Connection refused" in r.message
        finally:
            kmip.start()
        r = latest(b, 2)
        assert r.status == kbproto.OK, r
        assert "cannot create key 2 version 1" in b.log_text()
    finally:
        b.stop()


def test_server_that_never_answers_times_out_within_the_request_timeout_and_recovers(workdir, kmip):
    uid = kmip.create_master_key()
    relay = Relay(kmip.port)
    b = start(workdir, "silent", kmip, master_key_id=uid, address=relay.address, request_timeout_ms=1000, max_retries=1)
    try:
        key = latest(b, 1).key()
        relay.silent.set()
        assert latest(b, 1).key() == key
        began = time.time()
        r = latest(b, 2)
        took = time.time() - began
        assert r.status == kbproto.UNAVAILABLE, r
        assert "timed out" in r.message and relay.address in r.message
        # Two attempts of at most 1 s each and one backoff pause: bounded, never a hang.
        assert took < 15, took
        relay.silent.clear()
        assert wait_for(lambda: latest(b, 2).status == kbproto.OK)
    finally:
        b.stop()
        relay.close()


def test_untrusted_server_certificate_then_the_right_one_again(workdir, kmip):
    uid = kmip.create_master_key()
    b = start(workdir, "wrongca", kmip, master_key_id=uid)
    try:
        key = latest(b, 1).key()
        kmip.restart(server_cert="other-server")  # a server certificate from a CA we do not trust
        try:
            assert latest(b, 1).key() == key
            r = latest(b, 2)
            assert r.status == kbproto.UNAVAILABLE, r
            assert f"KMIP server {kmip.address}: certificate not trusted: unable to get local issuer certificate" in r.message
            assert "certificate not trusted" in b.log_text()
        finally:
            kmip.restart()
        assert latest(b, 2).status == kbproto.OK
    finally:
        b.stop()


def test_client_certificate_refused_by_the_server_then_accepted_again(workdir, kmip):
    uid = kmip.create_master_key()
    b = start(workdir, "refused", kmip, master_key_id=uid)
    try:
        key = latest(b, 1).key()
        kmip.restart(ca="other-ca")  # the server no longer trusts the CA of our client certificate
        try:
            assert latest(b, 1).key() == key
            r = latest(b, 2)
            assert r.status == kbproto.REFUSED, r
            assert f"KMIP server {kmip.address} refused the client certificate (TLS alert from the server" in r.message
        finally:
            kmip.restart()
        assert latest(b, 2).status == kbproto.OK
    finally:
        b.stop()


def test_client_certificate_without_client_auth_usage(workdir, kmip):
    # OpenSSL on the server side already refuses it in the handshake (unsupported certificate).
    uid = kmip.create_master_key()
    b = start(workdir, "noeku", kmip, master_key_id=uid, client="noeku-client")
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED, r
        assert f"KMIP server {kmip.address} refused the client certificate (TLS alert from the server: sslv3 alert unsupported certificate)" in r.message
        assert "clientAuth extended key usage" in r.message
    finally:
        b.stop()


def test_revoked_master_key(workdir, kmip):
    uid = kmip.create_master_key()
    b = start(workdir, "revoked", kmip, master_key_id=uid)
    try:
        key = latest(b, 1).key()
        kmip.revoke(uid)
        assert latest(b, 1).key() == key
        r = latest(b, 2)
        assert r.status == kbproto.REFUSED, r
        assert f"KMIP master key {uid}: it is revoked (state Deactivated)" in r.message
        assert r.refusal()[1:] == ("Permission Denied", uid), r.refusal()  # PyKMIP's reason; the key's state is in the message
        b.restart()
        r = get(b, 1, 1)
        assert r.status == kbproto.REFUSED, r
        assert f"KMIP master key {uid}: it is revoked (state Deactivated)" in r.message
        assert wait_for(lambda: "cannot wrap keys: it is revoked" in b.log_text())
    finally:
        b.stop()


def test_master_key_not_yet_active(workdir, kmip):
    uid = kmip.create_master_key(activate=False)
    b = start(workdir, "preactive", kmip, master_key_id=uid)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED, r
        assert f"KMIP master key {uid}: it is not active (state Pre-Active): activate it in the key manager" in r.message
        with kmip.client() as c:
            c.activate(uid)
        assert latest(b, 1).status == kbproto.OK  # no restart needed
    finally:
        b.stop()


def test_destroyed_master_key(workdir, kmip):
    uid = kmip.create_master_key()
    b = start(workdir, "destroyed", kmip, master_key_id=uid)
    try:
        key = latest(b, 1).key()
        kmip.destroy(uid)
        assert latest(b, 1).key() == key
        r = latest(b, 2)
        assert r.status == kbproto.REFUSED, r
        assert f"KMIP master key {uid} not found" in r.message
        assert "delete destroyed keys" in r.message or "destroyed" in r.message
        assert r.refusal()[1:] == ("Item Not Found", uid), r.refusal()
    finally:
        b.stop()


def test_master_key_of_another_client_is_not_permitted(workdir, kmip):
    uid = kmip.create_master_key(cert="stranger")
    b = start(workdir, "stranger", kmip, master_key_id=uid)
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED, r
        assert f"operation not permitted: the KMIP server refuses Encrypt with master key {uid} for this client certificate" in r.message
        assert r.refusal()[1:] == ("Permission Denied", uid), r.refusal()
    finally:
        b.stop()


def test_unknown_master_key_and_name(workdir, kmip):
    b = Broker(workdir / "unknown", instances={
        "default": kmip_instance(kmip, master_key_id="no-such-uid-424242"),
        "named": kmip_instance(kmip, master_key_id="name:no-such-name"),
    }).start()
    try:
        r = latest(b, 1)
        assert r.status == kbproto.REFUSED, r
        assert "KMIP master key no-such-uid-424242 not found" in r.message
        r = latest(b, 1, instance="named")
        assert r.status == kbproto.REFUSED, r
        assert "no symmetric key named \"no-such-name\" is visible to this client certificate" in r.message
    finally:
        b.stop()


def test_second_server_is_used_when_the_first_is_down(workdir, kmip):
    uid = kmip.create_master_key()
    from awsmoto import free_port
    closed = f"127.0.0.1:{free_port()}"
    b = start(workdir, "failover", kmip, master_key_id=uid, address=f"{closed},{kmip.address}")
    try:
        assert latest(b, 1).status == kbproto.OK
        log = b.log_text()
        assert f"KMIP server {closed} is not reachable" in log and f"KMIP server {kmip.address} answers; using it" in log
    finally:
        b.stop()


def test_host_name_is_checked_against_the_certificate(workdir, kmip):
    uid = kmip.create_master_key()
    relay = Relay(kmip.port, host="127.0.0.2")  # an address the server certificate does not name
    port = relay.address.split(":")[1]
    b = Broker(workdir / "names", instances={
        "byip": kmip_instance(kmip, master_key_id=uid, address=relay.address),
        "byname": kmip_instance(kmip, master_key_id=uid, address=f"localhost:{kmip.port}"),
    }).start()
    try:
        r = latest(b, 1, instance="byip")
        assert r.status == kbproto.UNAVAILABLE, r
        assert f"KMIP server 127.0.0.2:{port}: certificate not trusted: IP address mismatch" in r.message
        assert latest(b, 1, instance="byname").status == kbproto.OK
    finally:
        b.stop()
        relay.close()


def check_config(workdir, name, kmip, **settings):
    """keybrokerd --check with one kmip instance: (exit code, output)."""
    b = Broker(workdir / name, instances={"default": kmip_instance(kmip, **settings)})
    b.start(wait=False, args=["--check"])
    code = b.proc.wait(30)
    b.stop()
    return code, b.log_text()


def test_configuration_mistakes_are_one_line_at_start(workdir, kmip, tmp_path):
    loose = tmp_path / "loose.key"
    loose.write_bytes(open(kmip.pki.key("client"), "rb").read())
    loose.chmod(0o644)
    not_pem = tmp_path / "not-pem.pem"
    not_pem.write_text("hello\n")
    # Whoever can rewrite the CA file can point keybrokerd at a key manager of their own.
    writable_ca = tmp_path / "writable-ca.pem"
    writable_ca.write_bytes(open(kmip.pki.cert("ca"), "rb").read())
    writable_ca.chmod(0o664)
    cases = [
        ({"kmip_client_key_file": str(loose)}, f"instances.default.kmip_client_key_file: the KMIP client key {loose} is readable by group or others (mode 0644"),
        ({"kmip_ca_file": str(writable_ca)}, f"instances.default.kmip_ca_file: {writable_ca} is writable by group root"),
        ({"kmip_ca_file": str(not_pem)}, "instances.default.kmip_ca_file: kmip_ca_file cannot be read as PEM certificates"),
        ({"kmip_client_cert_file": kmip.pki.cert("stranger")}, "instances.default.kmip_client_key_file: the client key does not belong to the client certificate"),
        ({"kmip_server": "kmip.example.com:99999"}, "instances.default.kmip_server: \"kmip.example.com:99999\" is not host:port"),
        ({"master_key_id": "two words"}, "instances.default.master_key_id: must be a KMIP Unique Identifier (no spaces) or name:NAME"),
        ({"region": "us-east-1"}, "instances.default.region: applies to provider \"aws\" only; this instance uses provider \"kmip\""),
        ({"kmip_client_key_file": None}, "instances.default.kmip_client_key_file: a kmip instance needs the client certificate's private key"),
    ]
    for i, (settings, line) in enumerate(cases):
        code, out = check_config(workdir, f"config{i}", kmip, **settings)
        assert code == 1 or code == 78, (settings, code, out)
        assert line in out, (settings, out)
        assert len(out.strip().splitlines()) == 1, out
    code, out = check_config(workdir, "configok", kmip, master_key_id="anything")
    assert code == 0 and "configuration OK" in out, out


def test_kmip_1_2_wraps_with_aes_cbc_and_a_check_value(workdir, kmip):
    # PyKMIP drops the GCM tag from 1.2 messages: below 1.4 keybroker does not use GCM at all.
    uid = kmip.create_master_key()
    b = start(workdir, "v12", kmip, master_key_id=uid, kmip_protocol_version="1.2")
    try:
        key = latest(b, 3).key()
        blob = (b.instance_dir() / "kmip-key.3.1").read_bytes()
        fields = parse_blob(blob)
        assert fields["mode"] == 2 and fields["kmip"] == (1, 2) and fields["tag"] == b"" and len(fields["iv"]) == 16
        assert unwrap_blob(blob, kmip.master_key_bytes(uid), 3, 1) == key[1]
        assert "KMIP protocol 1.2 agreed" in b.log_text()
        b.restart()
        assert get(b, 3, 1).key_bytes() == key[1]
        # A file copied to another key id does not pass its check value and is never served.
        (b.instance_dir() / "kmip-key.4.1").write_bytes(blob)
        r = latest(b, 4)
        assert r.status == kbproto.INTERNAL, r
        assert "fails its check value" in r.message
    finally:
        b.stop()


def test_warm_up_sends_its_decrypts_in_full_batches(workdir, kmip):
    """The defaults (prefetch_concurrency 32, kmip_batch_size 16): a warm-up of 320 stored keys
    takes about 320 / 16 messages. Counted in the log of a server of its own (PyKMIP logs one
    "Received request" line per message and one "Processing operation" line per batch item), so
    no other test's requests are counted."""
    server = kmipserver.KMIPServer(workdir / "batch-server", kmip.pki).start()
    try:
        uid = server.create_master_key()
        keys = 320
        b = Broker(workdir / "batch", instances={"default": kmip_instance(server, master_key_id=uid, request_timeout_ms=30000)})
        b.start()
        try:
            with client(b) as c:
                for key_id in range(1, keys + 1):
                    assert c.latest(key_id).status == kbproto.OK
            b.stop()
            mark = len(server.log_path.read_text())
            b.start()
            assert b.wait_for_log(f"loaded {keys} of {keys} stored key versions", timeout=120), b.log_text()[-2000:]
            log = server.log_path.read_text()[mark:]
        finally:
            b.stop()
        assert log.count("Processing operation: Decrypt") == keys
        # Discover Versions and Get Attributes at start; the first Decrypt goes before the others
        # are queued, and the last message may be part-filled.
        messages = log.count("Received request at time")
        assert messages <= 2 + keys // 16 + 3, f"{messages} messages for {keys} Decrypts"
    finally:
        server.stop()
