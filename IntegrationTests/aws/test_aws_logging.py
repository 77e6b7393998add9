"""log_level (issue 16 item 4): aws_key_management's values are accepted; `Trace` logs one line per
AWS call with the request id moto really answered with (seen by a recording proxy in front of
moto, signature checks on), and no secret; every KMS error line carries the request id."""
import base64
import re

import pytest

import kbproto
from awsmoto import aws_instance, moto_fixture
from broker import Broker
from recording_proxy import proxy_fixture


moto = moto_fixture(16)
proxy = proxy_fixture()


def start(workdir, name, moto, proxy, level):
    a = moto.account
    b = Broker(workdir / name, instances={"default": aws_instance(moto, endpoint_url=proxy.url, sts_endpoint_url=proxy.url)},
               extra={"log_level": level})
    b.start(env=a.env())
    return b


TRACE = re.compile(r"AWS KMS (\w+)(?: \(([^)]*)\))?: HTTP (\d+)[^,]* in (\d+) ms, request id (\S+)")


def secrets_absent(log, moto, keys):
    a = moto.account
    assert a.secret not in log
    for key in keys:
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode()):
            assert form not in log, "key bytes in the log"


def test_trace_logs_every_kms_call_with_moto_request_ids_and_no_secret(workdir, moto, proxy):
    b = start(workdir, "trace", moto, proxy, "Trace")
    keys = []
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            for key_id in (1, 2, 3):
                r = c.latest(key_id)
                assert r.status == kbproto.OK, (r, b.log_text())
                keys.append(r.key()[1])
        b.restart()  # stored keys: Decrypt only
        with kbproto.Client(b.socket) as c:
            c.hello()
            for key_id in (1, 2, 3):
                assert c.get(key_id, 1).status == kbproto.OK
    finally:
        b.stop()
    log = b.log_text()
    traced = TRACE.findall(log)
    recorded = proxy.recorded()
    assert recorded, "the broker made no AWS call through the proxy"
    # One trace line per call, with the very id moto answered with (warm-up decrypts run concurrently:
    # compared as sets of pairs, and counted).
    assert len(traced) == len(recorded), log
    assert sorted((t[0], t[4]) for t in traced) == sorted((r["target"].split(".")[-1], r["request_id"]) for r in recorded), log
    assert all(r["request_id"] for r in recorded)
    ops = [t[0] for t in traced]
    assert ops.count("GenerateDataKeyWithoutPlaintext") == 3 and ops.count("Decrypt") >= 6, ops
    assert "DescribeKey" in ops
    # What each call was about: the master key of a generation, the data key of a Decrypt.
    assert any(t[0] == "GenerateDataKeyWithoutPlaintext" and "KMS key alias/keybroker" in t[1] and "key id=2, version=1" in t[1]
               for t in traced), traced
    assert any(t[0] == "Decrypt" and "key id=3, version=1" in t[1] for t in traced), traced
    secrets_absent(log, moto, keys)
    assert "Authorization" not in log and "Signature=" not in log


def ask_for_a_damaged_key_file(b, key_id):
    """A key file KMS cannot decrypt (InvalidCiphertextException), asked for after a restart."""
    d = b.instance_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / f"aws-kms-key.{key_id}.1").write_bytes(b"\x01\x02\x03 not a ciphertext blob " * 4)
    b.restart()
    with kbproto.Client(b.socket) as c:
        c.hello()
        assert c.get(key_id, 1).status != kbproto.OK


def test_kms_error_line_carries_the_request_id(workdir, moto, proxy):
    b = start(workdir, "error", moto, proxy, "Info")
    try:
        ask_for_a_damaged_key_file(b, 9)
        failed = [x for x in proxy.recorded() if x["status"] >= 400]
        assert failed, proxy.recorded()
        log = b.log_text()
        line = next((l for l in log.splitlines() if "aws-kms-key.9.1" in l and "KMS Decrypt failed" in l), None)
        assert line, log
        assert f"[AWS request id {failed[-1]['request_id']}]" in line, line
        assert "AWS KMS Decrypt" not in log.replace("KMS Decrypt failed", ""), "no trace lines below log_level trace"
    finally:
        b.stop()


@pytest.mark.parametrize("level", ["Off", "Fatal", "Error", "Warn", "Info", "Debug", "TRACE", "warning"])
def test_every_aws_key_management_level_is_accepted(workdir, level):
    b = Broker(workdir / f"level-{level}", extra={"log_level": level})
    b.start()
    try:
        with kbproto.Client(b.socket) as c:
            assert c.hello().status == kbproto.OK
    finally:
        b.stop()
    notes_logged = level.lower() in ("info", "debug", "trace")
    assert ("ready: instances" in b.log_text()) == notes_logged, b.log_text()


def test_off_still_logs_errors(workdir, moto, proxy):
    b = start(workdir, "off", moto, proxy, "Off")
    try:
        ask_for_a_damaged_key_file(b, 4)
        log = b.log_text()
        assert "aws-kms-key.4.1" in log and "AWS request id" in log, log
        assert "ready: instances" not in log
    finally:
        b.stop()


def metric(text, series):
    return next((float(l.split()[-1]) for l in text.splitlines() if l.startswith(series + " ")), None)


def test_metrics_count_kms_calls_by_operation_and_outcome(workdir, moto, proxy):
    """Issue 16 item 8: every KMS call counted with its outcome and time (the same calls moto answered)."""
    b = start(workdir, "metrics", moto, proxy, "info")
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            for key_id in (1, 2):
                assert c.latest(key_id).status == kbproto.OK
        ask_for_a_damaged_key_file(b, 6)
        # The restarted broker's warm-up decrypts keys 1 and 2 in the background; asking for them
        # waits for those Decrypts, so the counters are read after them, not during.
        with kbproto.Client(b.socket) as c:
            c.hello()
            for key_id in (1, 2):
                assert c.get(key_id, 1).status == kbproto.OK
        text = b.ctl("metrics").stdout
        recorded = proxy.recorded()
        for operation in ("GenerateDataKeyWithoutPlaintext", "Decrypt", "DescribeKey"):
            ok = sum(1 for r in recorded if r["target"] == f"TrentService.{operation}" and r["status"] == 200)
            got = metric(text, f'keybroker_aws_calls_total{{service="kms",operation="{operation}",outcome="ok"}}') or 0
            # The counters live in the process: what the running broker (after its restart) made.
            assert got <= ok and got >= (1 if operation != "GenerateDataKeyWithoutPlaintext" else 0), (operation, got, ok, text)
        # moto refuses the damaged blob (with the code it picks; warm-up and the request may each ask):
        # every refusal moto sent is counted under that code.
        failed = [l for l in text.splitlines() if l.startswith('keybroker_aws_calls_total{service="kms",operation="Decrypt",outcome="')
                  and 'outcome="ok"' not in l]
        refused = sum(1 for r in proxy.recorded() if r["target"] == "TrentService.Decrypt" and r["status"] >= 400)
        assert refused >= 1 and len(failed) == 1 and float(failed[0].split()[-1]) == refused, (refused, text)
        count = metric(text, 'keybroker_aws_call_duration_seconds_count{service="kms",operation="Decrypt"}')
        inf = metric(text, 'keybroker_aws_call_duration_seconds_bucket{service="kms",operation="Decrypt",le="+Inf"}')
        assert count and count == inf
    finally:
        b.stop()
