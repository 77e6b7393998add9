"""The README's first commands, as a newcomer types them: `make run`, the keybrokerctl line it
prints, Ctrl-C; and `make demo`. (`make` adds `deps` and `build` in front; those run before the
tests already.)"""
import os
import shlex
import signal
import subprocess
import time

from broker import BIN_DIR

from broker import ROOT  # noqa: E402


def test_make_run_starts_a_broker_that_the_printed_line_answers(workdir):
    run_dir = workdir / "newcomer-run"
    proc = subprocess.Popen(["bash", "scripts/run.sh", str(BIN_DIR), str(run_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not any("keybrokerctl --socket" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "make run stopped before printing the line to try:\n" + "".join(lines)
            lines.append(line)
        try_line = next(line for line in lines if "keybrokerctl --socket" in line).strip()
        deadline = time.time() + 30
        while not (run_dir / "keybroker.sock").exists() and time.time() < deadline:
            time.sleep(0.05)
        r = subprocess.run(shlex.split(try_line), cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("key 1 version 1 (256 bits, fingerprint ")
        assert oct(os.stat(run_dir / "master.key").st_mode & 0o777) == "0o600"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(20) == 0
        assert "keys zeroed" in proc.stdout.read()
        assert not (run_dir / "keybroker.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_make_demo_shows_the_secret_only_in_the_unencrypted_table(workdir):
    demo = workdir / "demo"
    r = subprocess.run(["bash", "scripts/demo.sh", str(BIN_DIR), str(ROOT / "build" / "plugin"), str(demo)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "INNODB_TABLESPACES_ENCRYPTION" in r.stdout
    assert "keybroker_key_management_cache_hits" in r.stdout.lower()
    assert "Only the ENCRYPTED=NO table holds the plaintext." in r.stdout
    checked = [l.split() for l in r.stdout.splitlines() if l.strip().startswith(("FOUND", "not found"))]
    found = [words[-1] for words in checked if words[0] == "FOUND"]
    assert found == ["data/demo/public.ibd"], checked
    assert ["not", "found", "data/demo/secrets.ibd"] in checked and ["not", "found", "data/ib_logfile0"] in checked
    assert "Done." in r.stdout
