"""The plugin and the broker's key-set identity (INFO's `key_set`, docs/protocol.md), as the plugin
sees it outside mariadbd (the datadir's record is mariadbd's: IntegrationTests/mariadb/test_mariadb_key_set.py).

Against the misbehaving broker (IntegrationTests/support/misbehaving_broker.py, the hand-written
fake): it plays a broker that names no key set (older), one that names an impossible one, and one
whose key set changes under a running plugin, which keybrokerd does only after its store is lost.
"""
import time

import pytest

import kbproto
from misbehaving_broker import info_answer
from plugin_driver import Driver

INVALID = 0xFFFFFFFF


@pytest.fixture
def broker(broker):
    """The conftest's misbehaving broker (the conftest also builds the test tools), naming a key set."""
    broker.key_set = "misbehaving-key-set"
    return broker


def ops(broker):
    return [op for op, _ in broker.frames]


def test_the_key_set_is_shown_and_checked_on_every_later_connection(broker):
    d = Driver(broker.path)
    assert d.init()[0] == 0, d.log
    assert 'key set misbehaving-key-set of instance "default"' in d.log
    assert d.texts()["key_set"] == "misbehaving-key-set", "shown as keybroker_key_management_key_set"
    assert d.latest(3)[0] == 1
    started = ops(broker).count(kbproto.OP_INFO)
    broker.stop()
    broker.start()  # every connection closed: both lanes connect again, each asks INFO
    assert d.latest(4)[0] == 1
    assert ops(broker).count(kbproto.OP_INFO) > started
    d.close()


def test_a_broker_that_names_no_key_set_is_used_without_the_check(broker):
    broker.key_set = None  # INFO is UNSUPPORTED, as from a broker older than INFO
    d = Driver(broker.path)
    assert d.init()[0] == 0, d.log
    assert d.latest(3)[0] == 1
    assert "key set" not in d.log, "outside mariadbd nothing is recorded or checked, so nothing is said"
    broker.stop()
    broker.start()
    assert d.latest(4)[0] == 1, "no check, so no refusal on reconnection"
    d.close()


@pytest.mark.parametrize("identity", ["", "x" * 65, "has space", "slash/no", "\u00e9t\u00e9"])
def test_an_impossible_key_set_is_refused(broker, identity):
    broker.script[kbproto.OP_INFO] = lambda b, req: info_answer(req, {"provider": "local", "key_set": identity})
    d = Driver(broker.path)
    assert d.init()[0] == 0, "INFO's failure does not stop the plugin by itself"
    assert "(impossible answer: key-set identity of" in d.log
    assert "key set misbehaving" not in d.log and 'key set of instance' not in d.log, "not taken"
    d.close()


def test_a_broker_that_changes_key_sets_is_not_used_and_cached_keys_stay(broker):
    """keybrokerd whose state_dir was lost comes back with a new key set: its keys are not this
    datadir's. The plugin treats it as away (cached keys answer, a new key fails, nothing is
    asked there) until the broker with the right key set is back."""
    d = Driver(broker.path, version_ttl=200)
    assert d.init()[0] == 0, d.log
    assert d.latest(1)[0] == 1
    rc, key1 = d.get(1, 1)
    broker.key_set = "another-key-set"
    broker.stop()
    broker.start()
    assert d.latest(1)[0] == 1 and d.get(1, 1) == (0, key1), "cached keys stay in use"
    for _ in range(20):
        assert d.latest(2)[0] == INVALID, "a new key is not taken from another key set"
    assert broker.count(kbproto.OP_LATEST_KEY, key_id=2) == 0, "not even asked for"
    assert "changed key sets (the broker serves key set another-key-set, this datadir's is misbehaving-key-set)" in d.log
    assert d.log.count("is back with another key set (the broker serves key set another-key-set") == 1, "one line per change"
    broker.key_set = "misbehaving-key-set"
    deadline = time.time() + 15
    while d.latest(2)[0] == INVALID and time.time() < deadline:
        time.sleep(0.2)
    assert d.latest(2)[0] == 1, "the right key set back: new keys again"
    assert d.deinit()[0] == 0
    d.close()
