"""The libFuzzer target for the wire decoder (fuzz/DecoderFuzzer.swift), briefly and seeded (issue 6, item 3).

`make fuzz` runs it for FUZZ_SECONDS; here it runs KEYBROKER_FUZZ_SECONDS (default 25) from the
committed seed corpus with a fixed seed, so a failure repeats. New inputs go to a temporary
directory, never into fuzz/corpus.
"""
import os
import re
import subprocess
import tempfile
from pathlib import Path

from broker import ROOT  # noqa: E402
FUZZER = ROOT / ".build-fuzz" / "keybroker-decoder-fuzzer"
CORPUS = ROOT / "fuzz" / "corpus"
SECONDS = int(os.environ.get("KEYBROKER_FUZZ_SECONDS", "25"))
SEED = int(os.environ.get("KEYBROKER_FUZZ_SEED", "20261129"))


def test_decoder_fuzzer_finds_nothing_from_the_seed_corpus():
    # Up to date is a no-op; a fresh clone builds NIOCore with the sanitizers once (about 90 s).
    subprocess.run(["make", "-s", "-C", str(ROOT), "fuzz-build"], check=True, timeout=1800)
    seeds = sorted(p.name for p in CORPUS.iterdir())
    assert any(s.startswith("req-") for s in seeds) and any(s.startswith("bad-") for s in seeds), seeds
    with tempfile.TemporaryDirectory(prefix="keybroker-fuzz-") as found:
        out = subprocess.run(
            [str(FUZZER), "-max_len=65545", "-timeout=10", "-print_final_stats=1",
             f"-max_total_time={SECONDS}", f"-seed={SEED}", f"-artifact_prefix={found}/",
             found, str(CORPUS)],
            capture_output=True, text=True, timeout=SECONDS + 120,
            env={**os.environ, "SWIFT_BACKTRACE": "enable=no"})
        log = out.stderr
        crashes = [p.name for p in Path(found).iterdir() if p.name.startswith(("crash-", "leak-", "timeout-", "oom-"))]
        new_inputs = sum(1 for p in Path(found).iterdir() if p.is_file()) - len(crashes)
    assert out.returncode == 0, f"libFuzzer exited {out.returncode} (artifacts {crashes}):\n{log[-6000:]}"
    runs = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert runs, log[-3000:]
    executions, seconds = int(runs.group(1)), int(runs.group(2))
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", log)
    print(f"\nfuzz: {executions} executions in {seconds} s (seed {SEED}) from {len(seeds)} seeds, "
          f"{new_inputs} new inputs" + (f", coverage {coverage[-1][0]} edges, {coverage[-1][1]} features" if coverage else ""))
    assert executions > 10 * len(seeds), "the fuzzer hardly ran"
