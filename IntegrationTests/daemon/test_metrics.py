"""Metrics (issue 16 item 8): keybrokerctl metrics prints Prometheus text, metrics_listen serves it,
and Debian's prometheus, started here, scrapes it: its query API returns the request counters
this test's own requests produced."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import kbproto
from awsmoto import free_port
from broker import Broker

PROMETHEUS = shutil.which("prometheus")


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


@pytest.fixture(scope="module")
def metered(workdir):
    port = free_port()
    b = Broker(workdir / "metrics", extra={"metrics_listen": f"127.0.0.1:{port}"})
    b.start()
    b.metrics_url = f"http://127.0.0.1:{port}/metrics"
    yield b
    b.stop()


@pytest.fixture(scope="module")
def prometheus(workdir, metered):
    assert PROMETHEUS, "Debian's prometheus is missing: make deps"
    directory = workdir / "prometheus"
    directory.mkdir()
    target = metered.metrics_url.split("//")[1].split("/")[0]
    (directory / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: keybroker\n    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    log = open(directory / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).read()
            break
        except Exception:
            assert proc.poll() is None, (directory / "prometheus.log").read_text()
            time.sleep(0.2)
    yield api
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def query(api, expression):
    url = f"{api}/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    return {json.dumps(x["metric"], sort_keys=True): float(x["value"][1]) for x in answer["data"]["result"]}


def test_prometheus_scrapes_the_request_counters_this_test_produced(metered, prometheus):
    with kbproto.Client(metered.socket) as c:
        assert c.hello().status == kbproto.OK
        for key_id in range(1, 38):
            assert c.latest(key_id).status == kbproto.OK
        for key_id in range(1, 6):
            assert c.get(key_id, 99).status == kbproto.NOT_FOUND
    expected = {"LATEST_KEY": 37, "GET_KEY": 5}

    def scraped():
        ok = query(prometheus, 'keybroker_requests_total{op="LATEST_KEY",status="OK"}')
        missing = query(prometheus, 'keybroker_requests_total{op="GET_KEY",status="NOT_FOUND"}')
        return list(ok.values()) == [expected["LATEST_KEY"]] and list(missing.values()) == [expected["GET_KEY"]]

    deadline = time.time() + 60
    while time.time() < deadline and not scraped():
        time.sleep(0.5)
    assert scraped(), query(prometheus, "keybroker_requests_total")
    up = query(prometheus, 'up{job="keybroker"}')
    assert list(up.values()) == [1.0]
    keys = query(prometheus, 'keybroker_keys{broker_instance="default"}')
    assert list(keys.values()) == [37.0], keys


def test_metrics_over_http_and_from_keybrokerctl_agree(metered):
    status, content_type, text = scrape(metered.metrics_url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    ctl = metered.ctl("metrics")
    assert ctl.returncode == 0, ctl.stderr
    for series in ['keybroker_keys{broker_instance="default",provider="local"}', 'keybroker_reloads_total{outcome="failed"}',
                   'keybroker_rotations_total{kind="scheduled"}', "keybroker_locked_memory_bytes"]:
        assert value(text, series) is not None, series
        assert value(ctl.stdout, series) == value(text, series), series
    assert value(text, "keybroker_connections") == 0 and value(ctl.stdout, "keybroker_connections") == 1, "keybrokerctl's own connection"
    assert value(text, "keybroker_locked_memory_bytes") > 0
    if shutil.which("promtool"):
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    for path, code in [("/nothing", 404), ("/metrics?x=1", 200)]:
        try:
            got = urllib.request.urlopen(metered.metrics_url.replace("/metrics", path), timeout=10).status
        except urllib.error.HTTPError as e:
            got = e.code
        assert got == code, path


def test_a_bad_metrics_listen_is_one_line(workdir):
    b = Broker(workdir / "metrics-bad", extra={"metrics_listen": "9464"})
    r = subprocess.run([str(__import__("broker").KEYBROKERD), "--check", "--config", str(b.config_path)], capture_output=True, text=True)
    assert r.returncode == 78 and "metrics_listen" in r.stderr and "127.0.0.1:9464" in r.stderr, r.stderr


def test_a_port_in_use_is_one_line_at_start(workdir, metered):
    port = metered.metrics_url.split(":")[2].split("/")[0]
    b = Broker(workdir / "metrics-busy", extra={"metrics_listen": f"127.0.0.1:{port}"})
    b.start(wait=False)
    code = b.proc.wait(timeout=30)
    b.stop()
    assert code != 0 and "metrics_listen: cannot listen on 127.0.0.1:" in b.log_text(), b.log_text()
