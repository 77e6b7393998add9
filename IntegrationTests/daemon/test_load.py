"""Load: 64 concurrent clients, 1,000,000 mixed requests, every answer checked (issue 6, item 4)."""
import json
import os
import subprocess

from broker import Broker
from tools import c_tool


def proc_figures(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return fds, int(status["VmRSS"].split()[0]), int(status["VmLck"].split()[0])


def settled_figures(pid, fds_wanted, timeout=5):
    """The broker closes a connection a moment after its client does: wait for that."""
    import time
    deadline = time.time() + timeout
    while True:
        figures = proc_figures(pid)
        if figures[0] <= fds_wanted or time.time() > deadline:
            return figures
        time.sleep(0.05)


def run_load(b, clients, requests, rotate_per_million=0):
    out = subprocess.run([str(c_tool("kbload")), b.socket, "default", str(clients), str(requests), "64", "32",
                          str(rotate_per_million)], capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout)
    assert out.returncode == 0, result
    return result


def test_a_million_mixed_requests_from_64_clients(workdir):
    b = Broker(workdir / "load")
    b.start()
    try:
        run_load(b, 64, 100_000)  # warm-up: keys created, allocator and event loops at steady state
        import time
        time.sleep(0.5)
        fds_before, rss_before, _ = proc_figures(b.proc.pid)
        result = run_load(b, 64, 1_000_000, rotate_per_million=20)
        fds_after, rss_after, locked = settled_figures(b.proc.pid, fds_before)
        print(f"\nload: {result['requests']} requests, {result['rotations']} rotations, {result['seconds']} s, "
              f"{result['requests_per_second']} req/s; fds {fds_before} -> {fds_after}; "
              f"RSS {rss_before} -> {rss_after} kB; VmLck {locked} kB")
        assert result["requests"] == 1_000_000
        assert result["errors"] == 0 and result["wrong"] == 0
        assert fds_after == fds_before, "file descriptors leaked"
        assert rss_after - rss_before < 16 * 1024, f"RSS grew by {rss_after - rss_before} kB"
    finally:
        b.stop()
