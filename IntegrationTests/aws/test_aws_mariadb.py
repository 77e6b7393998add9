"""A real mariadbd on the aws provider, against moto with signature checking on.

- Two-factor start: a server started before `keybrokerctl unlock` waits (one line), starts after
  the unlock (one more line); one never unlocked fails after startup_timeout with one line.
- The failure classes: a peer the broker does not let in (DENIED), the KMS refusing a disabled
  key (REFUSED, with KMS's code and the key), the KMS down (UNAVAILABLE) — each its own status on
  the wire and its own line in the server's error log, with the fix for the person who can act.
- The status variables that say which broker, instance, provider, key and region serve the server.
"""
import os

import pytest

import kbproto
from awsmoto import (AWSAccount, Moto, aws_instance, clean_env, disabled_key_proxy, mfa_sts_shim, moto_fixture, seed,
                     unauthenticated)
from broker import Broker
from mariadb_server import ENCRYPTION_OPTIONS, MariaDB, require_mariadb_and_plugin, wait_until

SERVER_OPTIONS = {**ENCRYPTION_OPTIONS, "keybroker-key-management-request-timeout": "2000"}
SERIAL = "arn:aws:iam::123456789012:mfa/dba"
CODE = "918273"
WAITING = "waiting for `keybrokerctl unlock` on the broker"


@pytest.fixture(scope="module")
def plugin_built():
    require_mariadb_and_plugin()


moto = moto_fixture(41)


@pytest.fixture(scope="module")
def two_factor(workdir, moto, plugin_built):
    """A broker whose instance needs `keybrokerctl unlock`, and a server installed while it was
    unlocked. The base credentials may call STS only: every KMS call uses the unlocked session."""
    a = moto.account
    shim = mfa_sts_shim(moto, SERIAL, CODE)
    b = Broker(workdir / "mfa-broker", instances={"default": aws_instance(moto, mfa_serial=SERIAL, sts_endpoint_url=shim.url)})
    b.start(env=clean_env(AWS_ACCESS_KEY_ID=a.assumer_key_id, AWS_SECRET_ACCESS_KEY=a.assumer_secret))
    s = MariaDB(workdir / "mfa-server", b.socket, options=SERVER_OPTIONS)
    try:
        assert b.ctl("unlock", "--token-code", CODE).returncode == 0
        s.install()
        s.start()
        s.client("CREATE DATABASE kb; CREATE TABLE kb.t (id INT PRIMARY KEY, v TEXT) ENCRYPTION_KEY_ID=3; "
                 "INSERT INTO kb.t VALUES (1, 'before')")
        assert s.stop() == 0
        yield b, s
    finally:
        s.stop()
        b.stop()
        shim.close()


def test_a_server_started_before_the_unlock_waits_and_starts_after_it(two_factor):
    b, s = two_factor
    b.restart()  # a broker that starts is locked until its unlock
    with kbproto.Client(b.socket) as c:
        assert c.hello().status == kbproto.OK
        assert c.info().status == kbproto.LOCKED
        assert c.latest(1).status == kbproto.LOCKED
    s.start("--keybroker-key-management-startup-timeout=300", wait=False)
    wait_until(lambda: WAITING in s.new_log(), timeout=60, message="the plugin to say it waits for the unlock")
    assert s.alive(), s.new_log()
    assert "ready for connections" not in s.new_log()
    r = b.ctl("unlock", "--token-code", CODE)
    assert r.returncode == 0, r.stderr
    s.wait_ready(120)
    log = s.new_log()
    assert log.count(WAITING) == 1, log
    assert ('keybroker_key_management: instance "default" is locked (two-factor start): waiting for '
            '`keybrokerctl unlock` on the broker, up to 300 s') in log
    assert 'keybroker_key_management: instance "default" was unlocked on the broker after ' in log
    assert log.index(WAITING) < log.index("was unlocked on the broker") < log.index("ready for connections")
    assert s.value("SELECT v FROM kb.t WHERE id = 1") == "before"
    s.client("CREATE TABLE kb.t4 (id INT) ENCRYPTION_KEY_ID=4; INSERT INTO kb.t4 VALUES (4)")
    assert s.encryption()["kb/t4"][0] == 4
    status = s.status()
    assert status["keybroker_key_management_provider"] == "aws alias/keybroker us-east-1"
    assert status["keybroker_key_management_master_key"] == "alias/keybroker"
    assert status["keybroker_key_management_instance"] == "default"
    assert status["keybroker_key_management_broker_version"].startswith("keybrokerd ")
    assert s.stop() == 0


def test_a_server_never_unlocked_fails_after_startup_timeout(two_factor):
    b, s = two_factor
    b.restart()
    code, elapsed, log = s.start_to_exit("--keybroker-key-management-startup-timeout=3", timeout=120)
    assert code != 0
    assert elapsed >= 3, elapsed
    assert log.count(WAITING) == 1, log
    assert ('keybroker_key_management: instance "default" is still locked on the broker after 3 s: nobody ran '
            '`keybrokerctl unlock` (two-factor start) — run keybrokerctl unlock --instance default --token-code NNNNNN') in log
    assert "ready for connections" not in log
    # Unlocked afterwards, the same server starts.
    assert b.ctl("unlock", "--token-code", CODE).returncode == 0
    s.start()
    assert s.value("SELECT COUNT(*) FROM kb.t") == "1"
    assert s.stop() == 0


def test_each_failure_class_has_its_own_status_and_line(workdir, plugin_built):
    """Its own moto, stopped at the end: the KMS down."""
    m = Moto(str(workdir)).start()
    seed(m, 43)
    account = AWSAccount(m)
    with unauthenticated(m):
        key_id = m.client("kms").create_key(Description="disabled later")["KeyMetadata"]["KeyId"]
    proxy = disabled_key_proxy(m, key_id)
    instance = aws_instance(m, master_key_id=key_id, endpoint_url=proxy.url, max_retries=1, request_timeout_ms=1000)
    b = Broker(workdir / "classes-broker",
               instances={"default": instance, "nobodys": {**instance, "clients": ["nobody"]}},
               extra={"admins": []})
    b.start(env=account.env())
    # Time enough for the broker's own retries (max_retries 1, 1 s each) under a loaded machine.
    s = MariaDB(workdir / "classes-server", b.socket,
                options={**SERVER_OPTIONS, "keybroker-key-management-request-timeout": "8000"})
    denied = MariaDB(workdir / "classes-denied", b.socket, instance="nobodys", options=SERVER_OPTIONS)
    try:
        s.install()
        s.start()
        s.client("CREATE DATABASE kb; CREATE TABLE kb.t (id INT PRIMARY KEY, v TEXT) ENCRYPTION_KEY_ID=2; "
                 "INSERT INTO kb.t VALUES (1, 'one')")
        assert s.status()["keybroker_key_management_provider"] == f"aws {key_id} us-east-1"

        # Peer not allowed: DENIED, and the hint is the broker's clients list.
        with kbproto.Client(b.socket) as c:
            assert c.hello("nobodys").status == kbproto.DENIED
        denied.datadir.mkdir()
        denied.start(wait=False)
        assert denied.wait_exit(60) != 0
        assert (f'keybroker_key_management: broker denied instance "nobodys" to uid {os.geteuid()} '
                f'— add the user to clients') in denied.log_text()

        # The KMS refuses (key disabled): REFUSED with KMS's code and the key; keys already loaded
        # keep working.
        with unauthenticated(m):
            m.client("kms").disable_key(KeyId=key_id)
        with kbproto.Client(b.socket) as c:
            assert c.hello().status == kbproto.OK
            r = c.latest(9)
            assert r.status == kbproto.REFUSED, r
            assert r.refusal()[1:] == ("DisabledException", key_id)
        r = s.client("CREATE TABLE kb.t5 (id INT) ENCRYPTION_KEY_ID=5", check=False)
        assert r.returncode != 0
        log = s.new_log()
        assert (f'keybroker_key_management: the key service refused key 5 of instance "default": DisabledException '
                f'for key {key_id} — the KMS key is disabled: enable it (aws kms enable-key)') in log, log[-3000:]
        assert "add the user to clients" not in log
        s.client("INSERT INTO kb.t VALUES (2, 'two')")
        assert s.value("SELECT COUNT(*) FROM kb.t") == "2"
        # The advanced guide's "disable the key after start-up": MariaDB restarts on the keys
        # the broker holds.
        s.restart()
        assert s.value("SELECT COUNT(*) FROM kb.t") == "2"
        with unauthenticated(m):
            m.client("kms").enable_key(KeyId=key_id)

        # The KMS unreachable: UNAVAILABLE, and the hint is the key service's reachability.
        m.stop()
        with kbproto.Client(b.socket) as c:
            assert c.hello().status == kbproto.OK
            assert c.latest(8).status == kbproto.UNAVAILABLE
        r = s.client("CREATE TABLE kb.t7 (id INT) ENCRYPTION_KEY_ID=7", check=False)
        assert r.returncode != 0
        log = s.new_log()
        assert ('keybroker_key_management: broker could not provide key 7 within 8000 ms: the key service or '
                'the key store is unreachable or failing') in log, log[-3000:]
        assert "no answer from AWS" in log
        assert s.value("SELECT COUNT(*) FROM kb.t") == "2"
    finally:
        s.stop()
        denied.stop()
        b.stop()
        proxy.close()
        m.stop()
