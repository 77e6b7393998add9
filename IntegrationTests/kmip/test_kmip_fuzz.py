"""The libFuzzer target for the KMIP TTLV decoder (fuzz/TTLVFuzzer.swift), briefly and seeded, as
IntegrationTests/daemon/test_fuzz.py runs the wire decoder's. `make fuzz-ttlv` runs it for FUZZ_SECONDS."""
import os
import subprocess

from broker import ROOT  # noqa: E402
from fuzzing import run_fuzzer
FUZZER = ROOT / ".build-fuzz" / "keybroker-ttlv-fuzzer"
CORPUS = ROOT / "fuzz" / "ttlv-corpus"
SECONDS = int(os.environ.get("KEYBROKER_FUZZ_SECONDS", "15"))
SEED = int(os.environ.get("KEYBROKER_FUZZ_SEED", "20261202"))


def test_ttlv_fuzzer_finds_nothing_from_the_seed_corpus():
    subprocess.run(["make", "-s", "-C", str(ROOT), "fuzz-ttlv-build"], check=True, timeout=1800)
    seeds = sorted(p.name for p in CORPUS.iterdir())
    assert "locateResponse" in seeds and any(s.startswith("bad-") for s in seeds), seeds
    run = run_fuzzer(FUZZER, CORPUS, max_len=4096, seconds=SECONDS, seed=SEED, prefix="keybroker-ttlv-fuzz-")
    print(f"\nttlv fuzz: {run.executions} executions in {run.seconds} s (seed {SEED}) from {len(seeds)} seeds")
    assert run.executions > 10 * len(seeds), "the fuzzer hardly ran"
