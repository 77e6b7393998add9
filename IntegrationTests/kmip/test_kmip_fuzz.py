"""The libFuzzer target for the KMIP TTLV decoder (fuzz/TTLVFuzzer.swift), briefly and seeded, as
IntegrationTests/daemon/test_fuzz.py runs the wire decoder's. `make fuzz-ttlv` runs it for FUZZ_SECONDS."""
from fuzzing import build_and_list_seeds, fuzz_target, run_fuzzer

FUZZER, CORPUS, SECONDS, SEED = fuzz_target("keybroker-ttlv-fuzzer", "ttlv-corpus", seconds=15, seed=20261202)


def test_ttlv_fuzzer_finds_nothing_from_the_seed_corpus():
    seeds = build_and_list_seeds("fuzz-ttlv-build", CORPUS)
    assert "locateResponse" in seeds and any(s.startswith("bad-") for s in seeds), seeds
    run = run_fuzzer(FUZZER, CORPUS, max_len=4096, seconds=SECONDS, seed=SEED, prefix="keybroker-ttlv-fuzz-")
    print(f"\nttlv fuzz: {run.executions} executions in {run.seconds} s (seed {SEED}) from {len(seeds)} seeds")
    assert run.executions > 10 * len(seeds), "the fuzzer hardly ran"
