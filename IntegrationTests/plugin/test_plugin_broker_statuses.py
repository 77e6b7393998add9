"""The broker's newer answers, read by the real plugin (loaded by plugin_driver.c, plain and with
ASan + UBSan) as outside input: REFUSED with its code and key, LOCKED at start (INFO) and on a key,
and INFO itself, each also hostile: control bytes, invalid UTF-8, over-long fields, short bodies.
The broker is IntegrationTests/support/misbehaving_broker.py (a fake: keybrokerd never sends
these bytes). Real keybrokerd and mariadbd play the same statuses in IntegrationTests/aws/test_aws_mariadb.py.
"""
import os
import struct
import time

import pytest

import kbproto
from misbehaving_broker import NEVER, answer, failure
from plugin_driver import Driver

INVALID = 0xFFFFFFFF
REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
SANITIZER_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
HOSTILE = b"\x1b[31mred\nnext line\r\x00\xff\xfe" + "é".encode() + b"\xe2\x82"


def raw_string(data):
    return struct.pack(">H", len(data)) + data


def refusal(req, message, code, key):
    return answer(req.op, req.request_id, kbproto.REFUSED, raw_string(message) + raw_string(code) + raw_string(key))


def info_answer(req, fields):
    body = struct.pack(">H", len(fields)) + b"".join(raw_string(n) + raw_string(v) for n, v in fields)
    return answer(req.op, req.request_id, kbproto.OK, body)


def plugin_lines(d):
    return [line for line in d.err_lines if "keybroker_key_management: " in line]


@pytest.mark.parametrize("variant", ["", "asan"])
def test_refused_names_the_code_and_key_and_escapes_what_it_repeats(broker, variant):
    d = Driver(broker.path, variant=variant, env=SANITIZER_ENV)
    try:
        assert d.init()[0] == 0, d.log
        cached = d.latest(1)[0]
        assert cached == 1
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: refusal(
            req, b"KMS GenerateDataKeyWithoutPlaintext failed: DisabledException " + HOSTILE * 40,
            b"DisabledException", b"alias/mariadb-encryption")
        assert d.latest(5)[0] == INVALID
        line = plugin_lines(d)[-1]
        assert ('the key service refused key 5 of instance "default": DisabledException for key '
                'alias/mariadb-encryption — the KMS key is disabled: enable it (aws kms enable-key)') in line
        assert "\\x1b[31mred\\x0anext line\\x0d\\x00\\xff\\xfeé\\xe2\\x82" in line, line
        assert not any(c in line for c in "\x1b\r\x00") and len(line) < 1200
        # An unknown code, fields far beyond their bounds, and invalid UTF-8 in the code.
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: refusal(req, b"x", b"Odd\xffCode" * 50, b"k" * 5000)
        assert d.latest(6)[0] == INVALID
        line = plugin_lines(d)[-1]
        assert "Odd\\xffCodeOdd" in line and "k" * 127 in line and "k" * 128 not in line, line
        assert "not of the database — see keybrokerd's log" in line
        # A body that stops after the message, or inside it: the status still counts.
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: answer(req.op, req.request_id, kbproto.REFUSED,
                                                                     raw_string(b"short"))
        assert d.latest(7)[0] == INVALID
        assert 'the key service refused key 7 of instance "default": refused' in plugin_lines(d)[-1]
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: answer(req.op, req.request_id, kbproto.REFUSED,
                                                                     b"\x00\xffcut")
        assert d.latest(8)[0] == INVALID
        assert d.latest(1)[0] == cached, "a cached key is still answered"
        assert "add the user to clients" not in d.log
    finally:
        d.close()
    assert not [line for line in d.err_lines if any(r in line for r in REPORTS)], d.log[-4000:]


@pytest.mark.parametrize("variant", ["", "asan"])
def test_start_waits_while_info_is_locked_and_goes_on_when_it_is_not(broker, variant):
    calls = {"n": 0}

    def locked_three_times(b, req):
        calls["n"] += 1
        if calls["n"] <= 3:
            return failure(req, kbproto.LOCKED, "instance waits for keybrokerctl unlock \x1b")
        return info_answer(req, [(b"provider", b"aws"), (b"unknown_field", b"ignored"),
                                 (b"master_key", b"alias/x\n"), (b"location", b"eu-west-1" * 40)])
    broker.script[kbproto.OP_INFO] = locked_three_times
    d = Driver(broker.path, variant=variant, env=SANITIZER_ENV, startup_timeout=30)
    try:
        assert d.init()[0] == 0, d.log
        assert calls["n"] == 4
        log = d.log
        assert log.count("waiting for `keybrokerctl unlock` on the broker") == 1, log
        assert 'instance "default" is locked (two-factor start): waiting for `keybrokerctl unlock` on the broker, up to 30 s' in log
        assert log.count('instance "default" was unlocked on the broker after ') == 1
        assert d.latest(3)[0] == 1
    finally:
        d.close()
    assert not [line for line in d.err_lines if any(r in line for r in REPORTS)], d.log[-4000:]


def test_start_fails_after_startup_timeout_when_never_unlocked(broker):
    broker.script[kbproto.OP_INFO] = lambda b, req: failure(req, kbproto.LOCKED, "locked")
    d = Driver(broker.path, startup_timeout=1)
    try:
        assert d.init()[0] != 0
        log = d.log
        assert log.count("waiting for `keybrokerctl unlock` on the broker") == 1, log
        assert ('instance "default" is still locked on the broker after 1 s: nobody ran `keybrokerctl unlock` '
                '(two-factor start) — run keybrokerctl unlock --instance default --token-code NNNNNN') in log
        asked = sum(1 for op, _ in broker.frames if op == kbproto.OP_INFO)
        assert 2 <= asked <= 20, asked  # asked again, with backoff, not in a busy loop
    finally:
        d.close()


def test_locked_on_a_key_is_retried_within_the_request_and_then_named(broker):
    d = Driver(broker.path, request_timeout=500)
    try:
        assert d.init()[0] == 0, d.log
        broker.script[kbproto.OP_LATEST_KEY] = lambda b, req: failure(req, kbproto.LOCKED, "session expired")
        assert d.latest(4)[0] == INVALID
        assert sum(1 for op, _ in broker.frames if op == kbproto.OP_LATEST_KEY) >= 2, "retried like UNAVAILABLE"
        assert ('instance "default" is locked on the broker: waiting for `keybrokerctl unlock` (two-factor start) '
                '— run keybrokerctl unlock --instance default --token-code NNNNNN (broker: session expired)') in d.log
    finally:
        d.close()


@pytest.mark.parametrize("body", [b"\x00\x05" + raw_string(b"provider"), b"\x00", b"\x00\x01" + raw_string(b"x") + b"\x00\x09ab"])
def test_a_malformed_info_costs_the_connection_not_the_start(broker, body):
    broker.script[kbproto.OP_INFO] = lambda b, req: answer(req.op, req.request_id, kbproto.OK, body)
    d = Driver(broker.path, variant="asan", env=SANITIZER_ENV)
    try:
        assert d.init()[0] == 0, d.log
        assert 'cannot ask the broker about instance "default" (malformed answer: INFO answer of' in d.log
        # Like any answer that breaks the format: the broker counts as away until the next
        # reconnect attempt (100 ms, jittered), then lookups go on.
        assert "lost connection to key broker" in d.log
        deadline = time.time() + 10
        while d.latest(2)[0] != 1:
            assert time.time() < deadline, d.log[-3000:]
            time.sleep(0.1)
    finally:
        d.close()
    assert not [line for line in d.err_lines if any(r in line for r in REPORTS)], d.log[-4000:]


def test_a_broker_without_info_is_not_an_error(broker):
    d = Driver(broker.path)
    try:
        assert d.init()[0] == 0, d.log
        assert "cannot ask the broker" not in d.log and "[ERROR]" not in d.log and "Warning" not in d.log
        assert d.latest(2)[0] == 1
    finally:
        d.close()


def test_status_texts_follow_the_broker_across_a_restart(broker):
    """SHOW STATUS says which broker, instance, provider and key serve the server; a broker that
    comes back after an outage (perhaps with another configuration) is asked again."""
    master = {"key": b"alias/first"}
    broker.script[kbproto.OP_INFO] = lambda b, req: info_answer(
        req, [(b"instance", b"default"), (b"provider", b"aws"), (b"master_key", master["key"]), (b"location", b"eu-west-1")])
    d = Driver(broker.path)
    try:
        assert d.init()[0] == 0, d.log
        assert d.texts() == {"broker_version": "misbehaving 1", "instance": "default",
                             "provider": "aws alias/first eu-west-1", "master_key": "alias/first", "key_set": ""}
        master["key"] = b"alias/second"
        broker.stop()
        assert d.latest(2)[0] == INVALID
        broker.start()
        deadline = time.time() + 10
        while d.texts()["master_key"] != "alias/second":
            assert time.time() < deadline, (d.texts(), d.log[-2000:])
            time.sleep(0.1)
        assert d.texts()["provider"] == "aws alias/second eu-west-1"
    finally:
        d.close()


def test_status_texts_without_info_name_the_broker_only(broker):
    d = Driver(broker.path)
    try:
        assert d.init()[0] == 0, d.log
        assert d.texts() == {"broker_version": "misbehaving 1", "instance": "default", "provider": "", "master_key": "",
                             "key_set": ""}
    finally:
        d.close()


def test_a_retry_that_runs_out_of_time_reports_the_brokers_answer(broker):
    """UNAVAILABLE is asked again within request_timeout; when the retry is still unanswered at the
    deadline, the line gives the broker's UNAVAILABLE (why), not only that time ran out."""
    calls = {"n": 0}

    def unavailable_then_silent(b, req):
        calls["n"] += 1
        return failure(req, kbproto.UNAVAILABLE, "KMS GenerateDataKeyWithoutPlaintext failed: no answer from AWS") \
            if calls["n"] == 1 else NEVER
    d = Driver(broker.path, request_timeout=600)
    try:
        assert d.init()[0] == 0, d.log
        broker.script[kbproto.OP_LATEST_KEY] = unavailable_then_silent
        assert d.latest(4)[0] == INVALID
        assert calls["n"] == 2
        assert ("broker could not provide key 4 within 600 ms: the key service or the key store is unreachable or "
                "failing (broker: KMS GenerateDataKeyWithoutPlaintext failed: no answer from AWS)") in d.log, d.log
    finally:
        d.close()


def test_status_texts_follow_a_reload_within_version_ttl(broker):
    """A reload may give the instance another master key without any outage: INFO is asked again
    with every refresh of the latest versions (one request per version_ttl), and only of a broker
    that answered it at start."""
    master = {"key": b"alias/before-reload"}
    broker.script[kbproto.OP_INFO] = lambda b, req: info_answer(req, [(b"provider", b"aws"), (b"master_key", master["key"])])
    d = Driver(broker.path, version_ttl=200)
    try:
        assert d.init()[0] == 0, d.log
        assert d.latest(1)[0] == 1  # something to refresh
        assert d.texts()["master_key"] == "alias/before-reload"
        master["key"] = b"alias/after-reload"
        deadline = time.time() + 10
        while d.texts()["master_key"] != "alias/after-reload":
            assert time.time() < deadline, d.log[-2000:]
            time.sleep(0.1)
        assert d.texts()["provider"] == "aws alias/after-reload"
    finally:
        d.close()


def test_a_broker_without_info_is_not_asked_again(broker):
    d = Driver(broker.path, version_ttl=100)
    try:
        assert d.init()[0] == 0, d.log
        assert d.latest(1)[0] == 1
        refreshes = broker.count(kbproto.OP_LATEST_KEY)
        deadline = time.time() + 10
        while broker.count(kbproto.OP_LATEST_KEY) < refreshes + 3:
            assert time.time() < deadline
            time.sleep(0.1)
        assert broker.count(kbproto.OP_INFO) == 1, "asked once, at start"
        # The one reconnect: after UNSUPPORTED the plugin drops that connection, as a broker
        # without INFO closes it.
        assert d.status()["reconnects"] == 1
    finally:
        d.close()
