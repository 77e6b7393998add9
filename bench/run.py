#!/usr/bin/env python3
"""`make bench`: keybroker measured side by side with its baselines, in one run (issue 7).

Every row runs the thing and its baseline in the same run, interleaved, REPS times (short
repetitions), and reports the median with min-max. Prints a table of ratios with the target and
whether it is met, and writes everything as JSON to bench/results/<timestamp>.json and
bench/results/latest.json. No row asserts: the bench reports.

    python3 bench/run.py --bin-dir .build/release --plugin build/plugin/keybroker_key_management.so \
        --tools build/bench [--reps 5] [--rows 1,2,3,4,5,6,7,8,9]
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=str(ROOT / ".build" / "release"), help="keybrokerd/keybrokerctl to measure")
    p.add_argument("--plugin", default=str(ROOT / "build" / "plugin" / "keybroker_key_management.so"))
    p.add_argument("--tools", default=str(ROOT / "build" / "bench"), help="kbload, floor_server, keybench")
    p.add_argument("--reps", type=int, default=5, help="repetitions of every measurement (default 5)")
    p.add_argument("--rows", default="1,2,3,4,5,6,7,8,9", help="rows to run, e.g. 1,3")
    p.add_argument("--sysbench-seconds", type=int, default=5, help="length of one sysbench run (row 5)")
    p.add_argument("--sysbench-reps", type=int, default=20,
                   help="sysbench runs per server, alternating (row 5; default 20: short runs, many alternations, "
                        "so the two runs of a pair see the same machine)")
    p.add_argument("--roundtrip-reps", type=int, default=9,
                   help="repetitions of rows 2, 3 and 8, each side alternating (default 9)")
    p.add_argument("--no-save", action="store_true", help="print only; write no results file")
    return p.parse_args()


ARGS = parse_args()
# IntegrationTests/support/broker.py reads the binary directory when imported.
os.environ["KEYBROKER_BIN_DIR"] = str(Path(ARGS.bin_dir).resolve())
sys.path.insert(0, str(ROOT / "IntegrationTests" / "support"))

import kbproto  # noqa: E402
from broker import Broker, me, wait_for_socket  # noqa: E402

TOOLS = Path(ARGS.tools).resolve()
PLUGIN_SO = Path(ARGS.plugin).resolve()
CORES = os.cpu_count() or 1


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# ---- statistics ------------------------------------------------------------------------------

def spread(values):
    """Median and min-max of a list of numbers."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": [round(v, 6) for v in values]}


def row(number, name, measured, baseline, ratio, target, met, unit, note="", **extra):
    """One line of the table. measured/baseline/ratio are spread() dicts (baseline may be None)."""
    return {"row": number, "name": name, "measured": measured, "baseline": baseline, "ratio": ratio,
            "target": target, "met": met, "unit": unit, "note": note, **extra}


# ---- machine ---------------------------------------------------------------------------------

def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
    versions = {}
    for tool, cmd in (("mariadbd", ["mariadbd", "--version"]), ("sysbench", ["sysbench", "--version"]),
                      ("cc", ["cc", "--version"])):
        try:
            versions[tool] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            versions[tool] = None
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    return {"cores": CORES, "cpu_model": model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "load_average_at_start": os.getloadavg(),
            "git_commit": commit + ("+dirty" if dirty else ""), "versions": versions}


# ---- helpers -----------------------------------------------------------------------------------

def local_broker(path, **extra_instance):
    b = Broker(path)
    b.instances["default"].update({"auto_create": True, **extra_instance})
    b.write_config()
    return b


def proc_status(pid):
    return {k: v.strip() for k, v in (line.split(":", 1) for line in open(f"/proc/{pid}/status"))}


def filesystem(path):
    r = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kb(value):
    return int(value.split()[0])


class FloorServer:
    def __init__(self, path, key_ids=100_000):
        self.socket = str(path)
        self.proc = subprocess.Popen([str(TOOLS / "floor_server"), self.socket, str(key_ids), str(CORES)])
        if not wait_for_socket(self.socket, self.proc, 10):
            raise RuntimeError("floor_server did not listen")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


ROUND_TRIP_CORE = "0"
DEPTH1_REPS = max(ARGS.roundtrip_reps, 15)  # row 8


def pin(cores, *pids):
    """Every thread of each process onto `cores` (taskset's list syntax)."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cores, str(pid)], check=True, capture_output=True)


def run_json(cmd, timeout=600):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} reported errors: {out}\n{r.stderr[-2000:]}")
    return out


# ---- row 1: the plugin's cached path ----------------------------------------------------------

LOOKUP_KEYS = 131_072  # at least 100,000 key ids cached (keybench wants a power of two)
# The thread-scaling ratios divide two runs' figures, each moved by the machine's drift, so row 1
# takes at least 9 repetitions of 400 ms runs (keybench runs an implementation's 1 and 8 threads
# back to back).
LOOKUP_REPS = max(ARGS.reps, 9)
LOOKUP_MS = 400


def row_cached_lookups(work):
    """keybench lookups: the real .so (dlopen) vs one mutex around ordered tables vs a null table,
    with LOOKUP_KEYS key ids cached. The plugin learns them from floor_server: creating that many
    keys in keybrokerd takes minutes, and the broker plays no part once they are cached."""
    floor = FloorServer(work / "lookups.sock", key_ids=LOOKUP_KEYS)
    try:
        out = run_json([TOOLS / "keybench", "lookups", PLUGIN_SO, floor.socket, LOOKUP_KEYS, LOOKUP_REPS, LOOKUP_MS, 1, 8])
    finally:
        floor.stop()
    samples = out["samples"]

    def cps(impl, function, threads, rep):
        return next(s["calls_per_second"] for s in samples
                    if (s["impl"], s["function"], s["threads"], s["rep"]) == (impl, function, threads, rep))

    reps = range(LOOKUP_REPS)
    rows = []
    busy_cores = min(8, CORES)
    for function in ("get_latest_key_version", "get_key"):
        plugin_ns = [1e9 / cps("plugin", function, 1, r) for r in reps]
        mutex_ns = [1e9 / cps("mutex_table", function, 1, r) for r in reps]
        rows.append(row("1", f"plugin cached `{function}`, {LOOKUP_KEYS:,} key ids, 1 thread (ns/call)", spread(plugin_ns), spread(mutex_ns),
                        spread([p / m for p, m in zip(plugin_ns, mutex_ns)]), "≤ 2×", None, "ns",
                        "baseline: one mutex around sorted tables (aws_key_management's design)"))
        rows[-1]["met"] = rows[-1]["ratio"]["median"] <= 2.0

        # Per-core throughput at 8 threads over that at 1 thread; the lock-free null table, which
        # shares nothing, shows what the machine itself allows.
        def scaling(impl):
            return [cps(impl, function, 8, r) / busy_cores / cps(impl, function, 1, r) for r in reps]
        plugin_s, mutex_s, null_s = scaling("plugin"), scaling("mutex_table"), scaling("null")
        relative = [p / n for p, n in zip(plugin_s, null_s)]
        rows.append(row("1", f"plugin cached `{function}`, 1 → 8 threads (per-core throughput, 8 ÷ 1)",
                        spread(plugin_s), spread(mutex_s), spread(relative), "no slowdown (≥ 0.9 of the machine's own)",
                        None, "×",
                        f"ratio column: plugin ÷ a lock-free table that shares nothing (the machine's own "
                        f"1 → 8 scaling, median {statistics.median(null_s):.2f}); baseline column: the mutex table",
                        machine_scaling=spread(null_s)))
        rows[-1]["met"] = rows[-1]["ratio"]["median"] >= 0.9
    return rows, {"samples": samples}


# ---- rows 2 and 3: round trip and throughput against the C floor ------------------------------

def rows_broker_vs_floor(work):
    b = local_broker(work / "broker").start()
    floor = FloorServer(work / "floor.sock")
    try:
        # Keys 1..64 exist in the broker and are in its memory before anything is timed.
        for target in (b.socket, floor.socket):
            run_json([TOOLS / "kbload", target, "default", 16, 100_000, 64, 32])

        # The four pairs take turns inside one process every 100 round trips (keybench), so a
        # change in the machine's load hits all of them alike. Client and servers share one core
        # for this row: on an otherwise idle VM, waking a thread on the other, halted, core costs
        # tens of microseconds each way (2026-12-03, 2 vCPUs: broker 11 µs on the client's core,
        # 105 µs on the other), and which core a server's thread sleeps on is luck (the floor has
        # a thread on each), so unpinned the row measured placement rather than the broker.
        pin(ROUND_TRIP_CORE, b.proc.pid, floor.proc.pid)
        pairs = {"plugin_broker": f"plugin:{b.socket}", "raw_floor": f"raw:{floor.socket}",
                 "plugin_floor": f"plugin:{floor.socket}", "raw_broker": f"raw:{b.socket}"}
        rt = {k: [] for k in pairs}
        server_cpu = {"broker": [], "floor": []}  # server CPU µs per round trip
        for rep in range(ARGS.roundtrip_reps):
            names = list(pairs) if rep % 2 == 0 else list(pairs)[::-1]
            c0 = {"broker": cpu_seconds(b.proc.pid), "floor": cpu_seconds(floor.proc.pid)}
            out = run_json(["taskset", "-c", ROUND_TRIP_CORE, TOOLS / "keybench", "roundtrip", 2000, *(pairs[n] for n in names)])
            trips = {"broker": 0, "floor": 0}
            for name, result in zip(names, out["targets"]):
                rt[name].append(result)
                trips[name.split("_")[1]] += result["round_trips"]
            server_cpu["broker"].append((cpu_seconds(b.proc.pid) - c0["broker"]) / trips["broker"] * 1e6)
            server_cpu["floor"].append((cpu_seconds(floor.proc.pid) - c0["floor"]) / trips["floor"] * 1e6)
        pin(f"0-{CORES - 1}", b.proc.pid, floor.proc.pid)
        p50 = {k: [r["p50_us"] for r in v] for k, v in rt.items()}
        ratio = [p / f for p, f in zip(p50["plugin_broker"], p50["raw_floor"])]
        r2 = row("2", "one broker round trip through the plugin's client code (median µs)", spread(p50["plugin_broker"]),
                 spread(p50["raw_floor"]), spread(ratio), "≤ 1.5×", statistics.median(ratio) <= 1.5, "µs",
                 f"baseline: a blocking C client and the C floor server (bench/floor_server.c), client and servers on core {ROUND_TRIP_CORE}; "
                 f"apart: plugin client → floor {statistics.median(p50['plugin_floor']):.1f} µs, "
                 f"C client → keybrokerd {statistics.median(p50['raw_broker']):.1f} µs; means "
                 f"{statistics.median([r['mean_us'] for r in rt['plugin_broker']]):.1f} vs "
                 f"{statistics.median([r['mean_us'] for r in rt['raw_floor']]):.1f} µs; server CPU per round trip: "
                 f"keybrokerd {statistics.median(server_cpu['broker']):.1f} µs, floor {statistics.median(server_cpu['floor']):.1f} µs",
                 server_cpu_us_per_round_trip={k: spread(v) for k, v in server_cpu.items()},
                 diagnostics={k: spread(v) for k, v in p50.items()},
                 mean_us={k: spread([r["mean_us"] for r in v]) for k, v in rt.items()},
                 p99_us={k: spread([r["p99_us"] for r in v]) for k, v in rt.items()})

        def throughput(runs, depth, reps):
            """requests/s and server CPU µs per request of each side, the sides alternating."""
            thr = {"broker": [], "floor": []}
            cpu = {"broker": [], "floor": []}
            for rep in range(reps):
                for name, path, pid, total in (runs if rep % 2 == 0 else runs[::-1]):
                    c0 = cpu_seconds(pid)
                    thr[name].append(run_json([TOOLS / "kbload", path, "default", 16, total, 64, depth])["requests_per_second"])
                    cpu[name].append((cpu_seconds(pid) - c0) / total * 1e6)
            return thr, cpu

        # About 1.5 s a run on 2 cores: half-second runs moved with every burst of the VM's load
        # (0.45-0.88x in one run of 2026-12-03).
        thr, cpu = throughput([("broker", b.socket, b.proc.pid, 1_500_000), ("floor", floor.socket, floor.proc.pid, 2_400_000)], 32, ARGS.roundtrip_reps)
        ratio = [x / y for x, y in zip(thr["broker"], thr["floor"])]
        r3 = row("3", "broker throughput, 16 clients, pipelined (requests/s)", spread(thr["broker"]), spread(thr["floor"]),
                 spread(ratio), "≥ 0.7×", statistics.median(ratio) >= 0.7, "req/s",
                 "kbload: 16 connections, 32 requests in flight each, LATEST_KEY/GET_KEY over 64 keys, every answer "
                 f"checked; server CPU per request: keybrokerd {statistics.median(cpu['broker']):.2f} µs, "
                 f"floor {statistics.median(cpu['floor']):.2f} µs (the client, kbload, shares the {CORES} cores)",
                 server_cpu_us_per_request={k: spread(v) for k, v in cpu.items()})

        # The plugin's pattern: each connection has one request in flight and waits for its answer,
        # so every request costs the server a read, a write and a wake-up. Its runs move most with
        # the VM (0.63-0.96x in one run of 2026-12-04, with server CPU per request steady): at
        # least 15 alternations.
        thr, cpu = throughput([("broker", b.socket, b.proc.pid, 200_000), ("floor", floor.socket, floor.proc.pid, 300_000)], 1,
                              DEPTH1_REPS)
        ratio = [x / y for x, y in zip(thr["broker"], thr["floor"])]
        r8 = row("8", "broker throughput, 16 clients, one request in flight each (requests/s)", spread(thr["broker"]),
                 spread(thr["floor"]), spread(ratio), "≥ 0.8×", statistics.median(ratio) >= 0.8, "req/s",
                 "kbload with depth 1: 16 connections each waiting for its answer before the next request, as the "
                 f"plugin's connections do; server CPU per request: keybrokerd {statistics.median(cpu['broker']):.2f} µs, "
                 f"floor {statistics.median(cpu['floor']):.2f} µs",
                 server_cpu_us_per_request={k: spread(v) for k, v in cpu.items()})
        return [r2, r3, r8], {"roundtrip": rt}
    finally:
        floor.stop()
        b.stop()


# ---- row 4: warm-up of 1,000 stored keys with a 20 ms KMS ------------------------------------

# keybrokerd's default prefetch_concurrency (Sources/BrokerConfiguration/InstanceConfig.swift)
DEFAULT_PREFETCH = 32
WARM_KEYS = 1000
KMS_LATENCY = 0.020


def wait_for_line(path, offset, needle, timeout):
    """Reads a growing log from offset until a line containing needle appears; returns that line."""
    deadline = time.monotonic() + timeout
    pending = b""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if needle.encode() in line:
                        return line.decode(errors="replace")
            elif time.monotonic() > deadline:
                raise RuntimeError(f"no '{needle}' in {path} after {timeout} s")
            else:
                time.sleep(0.002)


def timed_warm_up(b, timeout):
    """Starts the broker on WARM_KEYS stored keys; returns the seconds until its warm-up line, after
    checking that every key loaded and that the last one is served."""
    mark = b.log_path.stat().st_size if b.log_path.exists() else 0
    started = time.monotonic()
    b.start(wait=False)
    try:
        b.log.flush()
        line = wait_for_line(b.log_path, mark, "stored key versions", timeout)
        elapsed = time.monotonic() - started
        if f"loaded {WARM_KEYS} of {WARM_KEYS} stored key versions" not in line or "failed" in line:
            raise RuntimeError(f"warm-up failed: {line}\n{b.log_text()[-2000:]}")
        b.wait_ready()
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.get(WARM_KEYS, 1).status == kbproto.OK
        return elapsed
    finally:
        b.stop()


def row_warm_up(work):
    """The delaying proxy of IntegrationTests/aws/test_aws_warmup.py in front of moto. moto spends about 3 ms of
    CPU on each Decrypt, one request at a time (about 300 a second on this machine), which would
    cap every warm-up below the broker's own speed; so the proxy records moto's answer to each
    Decrypt in one live warm-up (timed and reported as well) and the timed runs get those same
    answers after the same 20 ms, without moto's CPU time. Other requests still go to moto."""
    from awsmoto import AWSAccount, Moto, Responder, aws_instance, clean_env, seed, unauthenticated

    class ReplayingProxy(Responder):
        def __init__(self, upstream):
            self.answers = {}
            self.replay = False
            super().__init__(self.delay, upstream=upstream)
            # socketserver listens with a backlog of 5: 64 connections opened at once would see
            # dropped SYNs and retransmits after a second, a delay of the rig, not of the broker.
            self.server.socket.listen(512)

        @staticmethod
        def blob(headers, body):
            target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
            return json.loads(body).get("CiphertextBlob") if target.endswith(".Decrypt") and body else None

        def delay(self, method, path, headers, body):
            time.sleep(KMS_LATENCY)
            if self.replay:
                return self.answers.get(self.blob(headers, body))
            return None

        def forward(self, method, path, headers, body):
            answer = super().forward(method, path, headers, body)
            blob = self.blob(headers, body)
            if blob and answer[0] == 200:
                self.answers[blob] = answer
            return answer

    moto = Moto(str(work)).start()
    proxy = None
    try:
        seed(moto, 23)
        account = AWSAccount(moto)
        t0 = time.monotonic()
        with unauthenticated(moto):
            kms = moto.client("kms")
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                blobs = list(pool.map(lambda _: kms.generate_data_key_without_plaintext(
                    KeyId="alias/keybroker", KeySpec="AES_256")["CiphertextBlob"], range(WARM_KEYS)))
        log(f"  {WARM_KEYS} data keys from moto in {time.monotonic() - t0:.1f} s")
        proxy = ReplayingProxy(moto.url)

        def broker(concurrency):
            b = Broker(work / f"warm{concurrency}", instances={"default": aws_instance(
                moto, prefetch_concurrency=concurrency, endpoint_url=proxy.url, request_timeout_ms=10000)})
            b.state_dir.mkdir(mode=0o700)
            b.instance_dir().mkdir(mode=0o700)
            for i, blob in enumerate(blobs, 1):
                (b.instance_dir() / f"aws-kms-key.{i}.1").write_bytes(blob)
            b.env = clean_env(AWS_ACCESS_KEY_ID=account.key_id, AWS_SECRET_ACCESS_KEY=account.secret)
            return b

        def warm_up_seconds(b):
            return timed_warm_up(b, 300)

        brokers = {c: broker(c) for c in (1, DEFAULT_PREFETCH, 64)}
        live = warm_up_seconds(brokers[DEFAULT_PREFETCH])
        log(f"  live moto, prefetch_concurrency={DEFAULT_PREFETCH}: {live:.2f} s ({len(proxy.answers)} answers recorded)")
        if len(proxy.answers) != WARM_KEYS:
            raise RuntimeError(f"recorded {len(proxy.answers)} Decrypt answers, expected {WARM_KEYS}")
        proxy.replay = True
        times = {c: [] for c in brokers}
        for rep in range(ARGS.reps):
            for c in ([1, DEFAULT_PREFETCH, 64] if rep % 2 == 0 else [64, DEFAULT_PREFETCH, 1]):
                times[c].append(warm_up_seconds(brokers[c]))
                log(f"  warm-up rep {rep + 1}, prefetch_concurrency={c}: {times[c][-1]:.2f} s")
    finally:
        if proxy:
            proxy.close()
        moto.stop()

    speedup16 = [one / par for one, par in zip(times[1], times[DEFAULT_PREFETCH])]
    speedup64 = [one / par for one, par in zip(times[1], times[64])]
    per_key_ms = statistics.median(times[1]) / WARM_KEYS * 1000
    # Latency-bound, c decrypts in flight give at most c× one by one: 20× needs c ≥ 20 / efficiency.
    efficiency16 = statistics.median(speedup16) / DEFAULT_PREFETCH
    needed = 20 / efficiency16 if efficiency16 > 0 else float("inf")
    note = (f"one by one: {per_key_ms:.1f} ms per key; c decrypts in flight give at most c×, so 20× needs "
            f"≥ 20 in flight (≈ {needed:.0f} at the {efficiency16:.0%} efficiency reached here); "
            f"with moto answering live (~3 ms of its CPU per Decrypt) prefetch_concurrency={DEFAULT_PREFETCH} took {live:.2f} s; "
            f"ratio column: one-by-one time ÷ prefetch time")
    rows = [
        row("4", f"warm-up of {WARM_KEYS:,} stored keys, KMS at 20 ms, prefetch_concurrency={DEFAULT_PREFETCH} (the default) (s)", spread(times[DEFAULT_PREFETCH]),
            spread(times[1]), spread(speedup16), "≥ 20× faster", statistics.median(speedup16) >= 20, "s", note,
            prefetch_concurrency=DEFAULT_PREFETCH),
        row("4", f"— the same, prefetch_concurrency=64 (extra point) (s)", spread(times[64]), spread(times[1]),
            spread(speedup64), "≥ 20× faster", statistics.median(speedup64) >= 20, "s", "", prefetch_concurrency=64),
    ]
    return rows, {"seconds": times, "live_moto_concurrency_16_seconds": live, "concurrency_needed_for_20x": needed}


# ---- row 7: warm-up of 1,000 stored keys against a real KMIP server (PyKMIP) -----------------

KMIP_BATCH = 16  # the default kmip_batch_size (Sources/KMIPKMS/KMIPSettings.swift)
# At least this many alternations: one warm-up takes seconds, and its wall time swings with the
# machine's load far more than the broker's share of it.
KMIP_REPS = max(ARGS.reps, 7)


def row_kmip_warm_up(work):
    """The kmip provider unwrapping 1,000 stored kmip-key files through PyKMIP 0.11's server over
    mutual TLS: one by one (prefetch_concurrency 1), the default prefetch_concurrency with one
    Decrypt per message (kmip_batch_size 1), and the defaults, which batch Decrypts (kmip_batch_size
    16). PyKMIP answers one message at a time (one engine lock, one SQLite session per message), so
    this shows what the broker's side costs and what batching saves; a hardware key manager
    answers in parallel."""
    import kmipserver
    kmip = kmipserver.shared()
    uid = kmip.create_master_key()
    maker = Broker(work / "make", instances={"default": kmipserver.kmip_instance(kmip, master_key_id=uid, request_timeout_ms=30000)})
    maker.start()
    t0 = time.monotonic()
    try:
        with kbproto.Client(maker.socket) as c:
            c.hello()
            for key_id in range(1, WARM_KEYS + 1):
                r = c.latest(key_id)
                if r.status != kbproto.OK:
                    raise RuntimeError(f"creating key {key_id}: {r}")
    finally:
        maker.stop()
    blobs = {p.name: p.read_bytes() for p in maker.instance_dir().glob("kmip-key.*")}
    log(f"  {len(blobs)} kmip keys created through PyKMIP in {time.monotonic() - t0:.1f} s")
    configs = {"one by one": (1, 1), "prefetch": (DEFAULT_PREFETCH, 1), "prefetch, batched": (DEFAULT_PREFETCH, KMIP_BATCH)}

    def broker(name, concurrency, batch):
        b = Broker(work / name.replace(" ", "").replace(",", "-"), instances={"default": kmipserver.kmip_instance(
            kmip, master_key_id=uid, prefetch_concurrency=concurrency, kmip_batch_size=batch, request_timeout_ms=30000)})
        b.state_dir.mkdir(mode=0o700)
        b.instance_dir().mkdir(mode=0o700)
        for file, blob in blobs.items():
            (b.instance_dir() / file).write_bytes(blob)
        return b

    brokers = {name: broker(name, *settings) for name, settings in configs.items()}
    times = {name: [] for name in configs}
    # What PyKMIP did for each warm-up: its CPU seconds, and the messages it received (its log
    # has one "Received request" line per message). Wall time on a shared machine swings 2-4x
    # between runs; these say whether the broker batched, whatever the machine was doing.
    server_cpu = {name: [] for name in configs}
    messages = {name: [] for name in configs}
    order = list(configs)
    for rep in range(KMIP_REPS):
        for name in (order if rep % 2 == 0 else order[::-1]):
            mark, cpu0 = len(kmip.log_path.read_text()), cpu_seconds(kmip.proc.pid)
            times[name].append(timed_warm_up(brokers[name], 600))
            server_cpu[name].append(cpu_seconds(kmip.proc.pid) - cpu0)
            messages[name].append(kmip.log_path.read_text()[mark:].count("Received request at time"))
            log(f"  kmip warm-up rep {rep + 1}, {name}: {times[name][-1]:.2f} s, {messages[name][-1]} messages, "
                f"PyKMIP CPU {server_cpu[name][-1]:.2f} s")
    one = times["one by one"]
    speedup = {name: [o / t for o, t in zip(one, times[name])] for name in ("prefetch", "prefetch, batched")}
    per_key_ms = statistics.median(one) / WARM_KEYS * 1000
    cpu_saved = statistics.median(server_cpu["one by one"]) / statistics.median(server_cpu["prefetch, batched"])
    note = (f"PyKMIP 0.11 over mutual TLS 1.2 (ECDSA P-256), KMIP 1.4, AES-GCM; one by one: {per_key_ms:.1f} ms per key; "
            f"PyKMIP serves one message at a time, so concurrency alone overlaps only the broker's and TLS's share and batching "
            f"saves PyKMIP's per-message work (about half of its CPU per key: the SQL lookups of the master key are per item); "
            f"messages per warm-up (median): one by one {statistics.median(messages['one by one']):.0f}, batched "
            f"{statistics.median(messages['prefetch, batched']):.0f} (start-up's 2 included); PyKMIP CPU per warm-up: one by one "
            f"{statistics.median(server_cpu['one by one']):.2f} s, batched {statistics.median(server_cpu['prefetch, batched']):.2f} s "
            f"({cpu_saved:.2f}× less); ratio column: one-by-one time ÷ this time")
    rows = [
        row("7", f"warm-up of {WARM_KEYS:,} stored keys from PyKMIP, prefetch_concurrency={DEFAULT_PREFETCH} (the default), one Decrypt per message (s)",
            spread(times["prefetch"]), spread(one), spread(speedup["prefetch"]), "— (reported)", None, "s", note),
        row("7", f"— the same with batched Decrypts (kmip_batch_size={KMIP_BATCH}, the default) (s)", spread(times["prefetch, batched"]),
            spread(one), spread(speedup["prefetch, batched"]), "≥ 1.5× faster", statistics.median(speedup["prefetch, batched"]) >= 1.5, "s", ""),
    ]
    return rows, {"seconds": times, "pykmip_cpu_seconds": server_cpu, "messages": messages}


# ---- row 9: key creation with the shared S3 store vs the local store --------------------------

STORE_KEYS = 100


def row_store_creation(work):
    """Creating new keys (LATEST_KEY of a new id: GenerateDataKeyWithoutPlaintext and Decrypt at
    KMS, then the key file) one at a time with provider = "aws", both against one moto_server
    (S3 and KMS, signatures checked): into state_dir, and into an S3 store (one ListObjectsV2 for
    the id, the PutObject with If-None-Match, then the cache file). Reports the time per key."""
    from s3store import MotoS3, StoreAccount, store_instance
    moto = MotoS3(str(work)).start()
    try:
        account = StoreAccount(moto)
        env = account.env()
        brokers = {
            "local store": Broker(work / "local", instances={"default": {k: v for k, v in store_instance(moto, provider="aws").items()
                                                                         if not k.startswith("store")}}),
            "S3 store": Broker(work / "s3", instances={"default": store_instance(moto, provider="aws", prefix="bench")}),
        }
        for b in brokers.values():
            b.start(env=env)
        times = {name: [] for name in brokers}
        order = list(brokers)
        next_id = 1
        for rep in range(ARGS.reps):
            for name in (order if rep % 2 == 0 else order[::-1]):
                with kbproto.Client(brokers[name].socket, timeout=60) as c:
                    c.hello()
                    t0 = time.monotonic()
                    for key_id in range(next_id, next_id + STORE_KEYS):
                        r = c.latest(key_id)
                        if r.status != kbproto.OK:
                            raise RuntimeError(f"{name}: creating key {key_id}: {r}")
                    times[name].append((time.monotonic() - t0) / STORE_KEYS * 1000)
                next_id += STORE_KEYS
                log(f"  creation rep {rep + 1}, {name}: {times[name][-1]:.1f} ms per key")
        for b in brokers.values():
            b.stop()
    finally:
        moto.stop()
    ratio = [s / local for s, local in zip(times["S3 store"], times["local store"])]
    note = ("provider aws, KMS and S3 both in one moto_server with SigV4 checks; one key at a time on one connection; "
            "the S3 store adds a ListObjectsV2 and a PutObject (If-None-Match: *) per new key; ratio column: S3 ÷ local")
    return [row("9", f"creation of a new key with the S3 store, {STORE_KEYS} keys one at a time (ms per key)",
                spread(times["S3 store"]), spread(times["local store"]), spread(ratio), "— (reported)", None, "ms", note)], \
        {"ms_per_key": times}


# ---- row 5: sysbench oltp_write_only, keybroker vs file_key_management -----------------------

def row_sysbench(work):
    from mariadb_server import MariaDB, require_mariadb
    require_mariadb()
    system_plugin_dir = next((line.split()[1] for line in subprocess.run(
        ["mariadbd", "--verbose", "--help"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("plugin-dir")), "/usr/lib/mysql/plugin")
    # One plugin directory for both servers, so that the plugin loaded is the only difference.
    plugins = work / "plugins"
    plugins.mkdir()
    (plugins / "keybroker_key_management.so").symlink_to(PLUGIN_SO)
    (plugins / "file_key_management.so").symlink_to(Path(system_plugin_dir) / "file_key_management.so")
    keyfile = work / "file-keys.txt"
    keyfile.write_text("".join(f"{i};{secrets.token_hex(32)}\n" for i in (1, 2)))
    os.chmod(keyfile, 0o600)

    common = {
        "plugin-dir": str(plugins),
        "innodb-encrypt-tables": "ON",
        "innodb-encrypt-log": "ON",
        "innodb-encryption-threads": "1",
        "innodb-buffer-pool-size": "256M",
        "innodb-log-file-size": "64M",
        "max-connections": "50",
    }

    class Server(MariaDB):
        def install(self):
            r = subprocess.run(["mariadb-install-db", f"--defaults-file={self.cnf}", "--skip-test-db",
                                "--auth-root-authentication-method=socket", f"--auth-root-socket-user={me()}",
                                f"--plugin-dir={plugins}"], capture_output=True, text=True, timeout=180)
            if r.returncode:
                raise RuntimeError(f"mariadb-install-db failed:\n{r.stdout}\n{r.stderr}\n{self.log_text()}")

    b = local_broker(work / "broker").start()
    servers = {
        "keybroker": Server(work / "keybroker", broker_socket=b.socket, options=dict(common)),
        "file_key_management": Server(work / "file", plugin=False, options=dict(common, **{
            "plugin-load-add": "file_key_management",
            "file-key-management": "FORCE_PLUS_PERMANENT",
            "file-key-management-filename": str(keyfile)})),
    }
    sb_common = ["--db-driver=mysql", f"--mysql-user={me()}", "--mysql-db=sbtest", "--tables=4", "--table-size=10000"]

    def sysbench(server, *args, seconds=None):
        cmd = ["sysbench", "oltp_write_only", *sb_common, f"--mysql-socket={server.socket}", *args]
        if seconds:
            cmd += ["--threads=2", f"--time={seconds}", "--report-interval=0", "run"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"sysbench failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r.stdout

    def tps(output):
        for line in output.splitlines():
            if line.strip().startswith("transactions:"):
                return float(line.split("(")[1].split()[0])
        raise RuntimeError(f"no transactions line in sysbench output:\n{output}")

    tps_runs = {name: [] for name in servers}
    encrypted = {}
    try:
        for name, s in servers.items():
            s.install()
            s.start()
            s.client("CREATE DATABASE sbtest")
            sysbench(s, "prepare")
            encrypted[name] = s.value("SELECT COUNT(*) FROM information_schema.INNODB_TABLESPACES_ENCRYPTION "
                                      "WHERE NAME LIKE 'sbtest/%' AND ENCRYPTION_SCHEME = 1")
            sysbench(s, seconds=5)  # warm: buffer pool, undo, redo in steady state
            os.kill(s.proc.pid, signal.SIGSTOP)
        log(f"  encrypted sbtest tables: {encrypted}")
        # Alternate A B A B …; the server not being measured is stopped (SIGSTOP) so that its
        # background flushing does not take CPU from the other.
        names = list(servers)
        for rep in range(ARGS.sysbench_reps):
            for name in (names if rep % 2 == 0 else names[::-1]):
                s = servers[name]
                os.kill(s.proc.pid, signal.SIGCONT)
                tps_runs[name].append(tps(sysbench(s, seconds=ARGS.sysbench_seconds)))
                os.kill(s.proc.pid, signal.SIGSTOP)
                log(f"  sysbench rep {rep + 1}, {name}: {tps_runs[name][-1]:.1f} tps")
    finally:
        for s in servers.values():
            if s.proc:
                try:
                    os.kill(s.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                s.stop()
        b.stop()
    ratio = [k / f for k, f in zip(tps_runs["keybroker"], tps_runs["file_key_management"])]
    return [row("5", "sysbench oltp_write_only, encrypted tables and redo log (transactions/s)",
                spread(tps_runs["keybroker"]), spread(tps_runs["file_key_management"]), spread(ratio), "≥ 0.98×",
                statistics.median(ratio) >= 0.98, "tps",
                f"baseline: the same server with file_key_management; 2 threads, 4 tables × 10,000 rows, "
                f"{ARGS.sysbench_seconds} s per run, alternating; datadir on {filesystem(work)}; "
                f"encrypted sbtest tablespaces: keybroker {encrypted.get('keybroker')}, file {encrypted.get('file_key_management')}")], \
        {"tps": tps_runs, "encrypted_tables": encrypted}


# ---- row 6: broker memory with 10,000 keys ---------------------------------------------------

MEMORY_KEYS = 10_000


def write_local_keys(b, count, instance="default"):
    """Key files in the local provider's format (Sources/KMS/LocalProvider.swift), written directly:
    creating 10,000 keys through the broker takes about a minute (each creation scans the
    directory), and this row is about the memory they take once cached, not about creating them."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    master = AESGCM(bytes.fromhex(Path(b.master_key).read_text().strip()))
    directory = b.instance_dir(instance)
    directory.mkdir(parents=True, mode=0o700)
    os.chmod(b.state_dir, 0o700)
    header = b"KBLK" + bytes([1, 32])
    for key_id in range(1, count + 1):
        aad = (b"keybroker-local-key-v1\0" + instance.encode() + b"\0" + key_id.to_bytes(4, "big")
               + (1).to_bytes(4, "big") + header)
        nonce = os.urandom(12)
        blob = header + nonce + master.encrypt(nonce, os.urandom(32), aad)
        path = directory / f"local-key.{key_id}.1"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        os.write(fd, blob)
        os.close(fd)


def row_memory(work):
    b = local_broker(work / "memory")
    write_local_keys(b, MEMORY_KEYS)
    b.start()
    try:
        deadline = time.time() + 120
        while f"loaded {MEMORY_KEYS} of {MEMORY_KEYS} stored key versions" not in b.log_text():
            if time.time() > deadline:
                raise RuntimeError(f"warm-up of {MEMORY_KEYS} keys did not finish:\n{b.log_text()[-2000:]}")
            time.sleep(0.05)
        after_warm_up = proc_status(b.proc.pid)
        # Every key asked for once, by 16 clients: the serving path's buffers count too.
        run_json([TOOLS / "kbload", b.socket, "default", 16, 200_000, MEMORY_KEYS, 32])
        time.sleep(0.5)
        after_load = proc_status(b.proc.pid)
    finally:
        b.stop()
    rss = [kb(after_warm_up["VmRSS"]) / 1024, kb(after_load["VmRSS"]) / 1024]
    peak = kb(after_load["VmHWM"]) / 1024
    return [row("6", f"broker RSS with {MEMORY_KEYS:,} keys cached (MiB)", spread([max(rss)]), None, None, "≤ 40 MB",
                max(rss, default=0) * 1.048576 <= 40 and peak * 1.048576 <= 40, "MiB",
                f"after warm-up {rss[0]:.1f} MiB, after 200,000 requests over all keys from 16 clients {rss[1]:.1f} MiB, "
                f"peak (VmHWM) {peak:.1f} MiB, locked (VmLck) {kb(after_load['VmLck']) / 1024:.1f} MiB; "
                f"of which file-backed (the binary's pages) {kb(after_load['RssFile']) / 1024:.1f} MiB")], \
        {"after_warm_up": after_warm_up, "after_load": after_load}


# ---- the table -------------------------------------------------------------------------------

def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "req/s":
        return f"{value / 1000:,.0f} k"
    if unit in ("s", "µs", "tps", "MiB"):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    if unit == "ns":
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(s, unit):
    if not s:
        return "—"
    if s["n"] == 1:
        return fmt(s["median"], unit)
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit)}–{fmt(s['max'], unit)})"


def table(rows):
    lines = ["| # | what | keybroker | baseline | ratio | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = r["ratio"]
        ratio_text = "—" if not ratio else f"{ratio['median']:.2f}× ({ratio['min']:.2f}–{ratio['max']:.2f})"
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['row']} | {r['name']} | {cell(r['measured'], r['unit'])} | {cell(r['baseline'], r['unit'])} "
                     f"| {ratio_text} | {r['target']} | {met} |")
    return "\n".join(lines)


def main():
    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for tool in ("kbload", "floor_server", "keybench"):
        if not (TOOLS / tool).exists():
            sys.exit(f"bench: {TOOLS / tool} is missing; run `make bench`")
    for path in (Path(ARGS.bin_dir) / "keybrokerd", PLUGIN_SO):
        if not path.exists():
            sys.exit(f"bench: {path} is missing; run `make bench`")
    info = machine()
    log(f"bench: {info['cores']} cores, {info['cpu_model']}, {info['memory_gib']} GiB, load {info['load_average_at_start']}")
    # tmpfs when there is one: the database row then measures CPU, not the disk's fsync latency.
    base = "/dev/shm" if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 4 << 30 else None
    work = Path(tempfile.mkdtemp(prefix="keybroker-bench-", dir=base))
    os.chmod(work, 0o755)
    wanted = {int(x) for x in ARGS.rows.split(",") if x.strip()}
    steps = [(1, "plugin cached path", row_cached_lookups), (2, "round trip and throughput", rows_broker_vs_floor),
             (4, "warm-up", row_warm_up), (5, "sysbench", row_sysbench), (6, "memory", row_memory),
             (7, "kmip warm-up", row_kmip_warm_up), (9, "key creation, S3 store vs local", row_store_creation)]
    rows, details, timings = [], {}, {}
    try:
        for number, title, step in steps:
            if number not in wanted and not (number == 2 and wanted & {3, 8}):
                continue
            t0 = time.monotonic()
            log(f"bench: row {number}{', 3 and 8' if number == 2 else ''}: {title} …")
            (work / f"row{number}").mkdir()
            got, detail = step(work / f"row{number}")
            rows += [r for r in got if int(r["row"]) in wanted]
            details[f"row{number}"] = detail
            timings[f"row{number}"] = round(time.monotonic() - t0, 1)
            log(f"bench: row {number} took {timings[f'row{number}']:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    info["load_average_at_end"] = os.getloadavg()
    result = {"started_utc": stamp, "machine": info, "reps": ARGS.reps, "roundtrip_reps": ARGS.roundtrip_reps,
              "sysbench_reps": ARGS.sysbench_reps, "rows": rows, "seconds": round(total, 1),
              "seconds_per_row": timings, "details": details}

    print()
    print(f"keybroker bench — {info['cores']} cores, {info['cpu_model']}, {info['memory_gib']} GiB RAM, "
          f"kernel {info['kernel']}, commit {info['git_commit']}; median (min–max) of {ARGS.reps} runs each "
          f"({LOOKUP_REPS} for row 1, {ARGS.roundtrip_reps} for rows 2 and 3, "
          f"{DEPTH1_REPS} for row 8, {KMIP_REPS} for row 7, "
          f"{ARGS.sysbench_reps} for row 5), "
          f"baseline in the same run; {total / 60:.1f} min")
    print()
    print(table(rows))
    print()
    for r in rows:
        if r["note"]:
            print(f"- row {r['row']}, {r['name']}: {r['note']}")
    if not ARGS.no_save:
        RESULTS.mkdir(exist_ok=True)
        text = json.dumps(result, indent=1, ensure_ascii=False) + "\n"
        for name in (f"{stamp}.json", "latest.json"):
            tmp = RESULTS / f"{name}.tmp"
            tmp.write_text(text)
            tmp.replace(RESULTS / name)
        print(f"\nwrote bench/results/{stamp}.json and bench/results/latest.json")


if __name__ == "__main__":
    main()
