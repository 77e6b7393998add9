"""The libFuzzer target for the wire decoder (fuzz/DecoderFuzzer.swift), briefly and seeded (issue 6, item 3).

`make fuzz` runs it for FUZZ_SECONDS; here it runs KEYBROKER_FUZZ_SECONDS (default 25) from the
committed seed corpus with a fixed seed, so a failure repeats. New inputs go to a temporary
directory, never into fuzz/corpus.
"""
import re

from fuzzing import build_and_list_seeds, fuzz_target, run_fuzzer

FUZZER, CORPUS, SECONDS, SEED = fuzz_target("keybroker-decoder-fuzzer", "corpus", seconds=25, seed=20261129)


def test_decoder_fuzzer_finds_nothing_from_the_seed_corpus():
    # Up to date is a no-op; a fresh clone builds NIOCore with the sanitizers once (about 90 s).
    seeds = build_and_list_seeds("fuzz-build", CORPUS)
    assert any(s.startswith("req-") for s in seeds) and any(s.startswith("bad-") for s in seeds), seeds
    run = run_fuzzer(FUZZER, CORPUS, max_len=65545, seconds=SECONDS, seed=SEED, prefix="keybroker-fuzz-")
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", run.log)
    print(f"\nfuzz: {run.executions} executions in {run.seconds} s (seed {SEED}) from {len(seeds)} seeds, "
          f"{run.new_inputs} new inputs" + (f", coverage {coverage[-1][0]} edges, {coverage[-1][1]} features" if coverage else ""))
    assert run.executions > 10 * len(seeds), "the fuzzer hardly ran"
