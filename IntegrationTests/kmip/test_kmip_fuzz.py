"""The libFuzzer target for the KMIP TTLV decoder (fuzz/TTLVFuzzer.swift), briefly and seeded, as
IntegrationTests/daemon/test_fuzz.py runs the wire decoder's. `make fuzz-ttlv` runs it for FUZZ_SECONDS."""
import os
import re
import subprocess
import tempfile
from pathlib import Path

from broker import ROOT  # noqa: E402
FUZZER = ROOT / ".build-fuzz" / "keybroker-ttlv-fuzzer"
CORPUS = ROOT / "fuzz" / "ttlv-corpus"
SECONDS = int(os.environ.get("KEYBROKER_FUZZ_SECONDS", "15"))
SEED = int(os.environ.get("KEYBROKER_FUZZ_SEED", "20261202"))


def test_ttlv_fuzzer_finds_nothing_from_the_seed_corpus():
    subprocess.run(["make", "-s", "-C", str(ROOT), "fuzz-ttlv-build"], check=True, timeout=1800)
    seeds = sorted(p.name for p in CORPUS.iterdir())
    assert "locateResponse" in seeds and any(s.startswith("bad-") for s in seeds), seeds
    with tempfile.TemporaryDirectory(prefix="keybroker-ttlv-fuzz-") as found:
        out = subprocess.run(
            [str(FUZZER), "-max_len=4096", "-timeout=10", "-print_final_stats=1", f"-max_total_time={SECONDS}",
             f"-seed={SEED}", f"-artifact_prefix={found}/", found, str(CORPUS)],
            capture_output=True, text=True, timeout=SECONDS + 120, env={**os.environ, "SWIFT_BACKTRACE": "enable=no"})
        crashes = [p.name for p in Path(found).iterdir() if p.name.startswith(("crash-", "leak-", "timeout-", "oom-"))]
    assert out.returncode == 0, f"libFuzzer exited {out.returncode} (artifacts {crashes}):\n{out.stderr[-6000:]}"
    runs = re.search(r"Done (\d+) runs in (\d+) second", out.stderr)
    assert runs, out.stderr[-3000:]
    print(f"\nttlv fuzz: {runs.group(1)} executions in {runs.group(2)} s (seed {SEED}) from {len(seeds)} seeds")
    assert int(runs.group(1)) > 10 * len(seeds), "the fuzzer hardly ran"
