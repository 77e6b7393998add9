"""One brief libFuzzer run, as `make test` runs the fuzz targets (daemon/test_fuzz.py: the wire
decoder; kmip/test_kmip_fuzz.py: the TTLV decoder): from the committed seed corpus with a fixed
seed, so a failure repeats; new inputs go to a temporary directory, never into the corpus."""
import os
import re
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

from broker import ROOT

ARTIFACTS = ("crash-", "leak-", "timeout-", "oom-")


def fuzz_target(binary, corpus, seconds, seed):
    """A fuzz test's (fuzzer, corpus, seconds, seed): the binary in .build-fuzz (mk/fuzz.mk), the
    seed corpus under fuzz/, and the run's length and seed unless KEYBROKER_FUZZ_SECONDS or
    KEYBROKER_FUZZ_SEED say otherwise."""
    return (ROOT / ".build-fuzz" / binary, ROOT / "fuzz" / corpus,
            int(os.environ.get("KEYBROKER_FUZZ_SECONDS", str(seconds))), int(os.environ.get("KEYBROKER_FUZZ_SEED", str(seed))))


def build_and_list_seeds(make_target, corpus):
    """`make make_target` (up to date is a no-op) and the sorted names of the seeds in `corpus`."""
    subprocess.run(["make", "-s", "-C", str(ROOT), make_target], check=True, timeout=1800)
    return sorted(p.name for p in Path(corpus).iterdir())


def run_fuzzer(fuzzer, corpus, max_len, seconds, seed, prefix):
    """Runs `fuzzer` for `seconds` from `corpus`; fails unless libFuzzer exits 0 and reports its
    runs. Returns `log` (its output), `executions`, `seconds` (as it reports them) and
    `new_inputs` (inputs it added, artifacts aside)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as found:
        out = subprocess.run(
            [str(fuzzer), f"-max_len={max_len}", "-timeout=10", "-print_final_stats=1", f"-max_total_time={seconds}",
             f"-seed={seed}", f"-artifact_prefix={found}/", found, str(corpus)],
            capture_output=True, text=True, timeout=seconds + 120, env={**os.environ, "SWIFT_BACKTRACE": "enable=no"})
        log = out.stderr
        crashes = [p.name for p in Path(found).iterdir() if p.name.startswith(ARTIFACTS)]
        new_inputs = sum(1 for p in Path(found).iterdir() if p.is_file()) - len(crashes)
    assert out.returncode == 0, f"libFuzzer exited {out.returncode} (artifacts {crashes}):\n{log[-6000:]}"
    runs = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert runs, log[-3000:]
    return SimpleNamespace(log=log, executions=int(runs.group(1)), seconds=int(runs.group(2)), new_inputs=new_inputs)
